"""make demo: a mixed workload through a real worker on the embedded SQLite broker.

Starts ``celeriac worker`` (2 children) as a subprocess, sends a shop's background
jobs in waves (durable and transient queues, short and long tasks, retries and
failures), and watches it all with the monitor (``celeriac.observe.monitor``, the
engine of ``celeriac monitor``): progress and alerts while the queues drain, then
what the monitor saw: queue length over time, arrival and service rates, the
overload alert and when it cleared, a no-consumer alert for tasks routed to a queue no
worker listens on, the ``celeriac top`` view, a few Prometheus
lines, per-child task counts and memory, and how every task ended.
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "demo-output"
BARS = " ▁▂▃▄▅▆▇█"
QUEUES = ("celery", "transient")
#: Waves of work, sent 1.5 s apart: (thumbnails, receipts, charges, reports, short durable tasks).
WAVES = [(1500, 300, 140, 8, 2000), (2500, 400, 140, 8, 3000), (1000, 200, 70, 8, 1000)]
#: Each wave arrives spread over this many monitor samples (0.25 s apart), one slice each: a
#: steady stream faster than two children serve, so the overload alert fires, then clears.
SLICES = 6
#: Retries back off for at most a second (demo_tasks): everything ends well within this.
SETTLE_TIMEOUT_S = 30.0
#: The monitor samples this often and calls a queue overloaded after it grew this long.
MONITOR_INTERVAL_S = 0.25
OVERLOAD_AFTER_S = 2.0
#: A few thumbnails go to a queue the worker was not started for: the no-consumer alert.
UNSERVED_QUEUE, UNSERVED_TASKS = "archive", 20


def longest_stall(values: list[int], sample_s: float = MONITOR_INTERVAL_S) -> float:
    """Longest stretch (seconds) in which a non-empty queue drained at most one task per sample."""
    longest = current = 0
    for before, after in itertools.pairwise(values):
        current = current + 1 if after and before - after <= 1 else 0
        longest = max(longest, current)
    return longest * sample_s


@dataclass
class Run:
    """What the demo saw while the worker drained the queues."""

    results: list[Any] = field(default_factory=list)
    history: dict[str, list[int]] = field(default_factory=lambda: {q: [] for q in QUEUES})
    sent: int = 0
    elapsed: float = 0.0
    #: per queue: the highest arrival and service rates the monitor measured
    peaks: dict[str, list[float]] = field(default_factory=dict)


def start_worker() -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(HERE), "DEMO_BROKER_URL": f"sqlite:///{OUT / 'demo.db'}"}
    cmd = [sys.executable, "-m", "celeriac", "worker", "-A", "demo_tasks", "-c", "2", "-l", "info"]
    return subprocess.Popen(
        [*cmd, "--logfile", str(OUT / "worker.log")], cwd=HERE, env=env, start_new_session=True
    )


def wait_ready(app: Any, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    from celeriac.observe.records import WorkerStats

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"the worker exited at start (code {proc.returncode}); see demo-output/worker.log")
        nodes = [WorkerStats.from_json(n.payload) for n in app.broker.node_stats()]
        if nodes and all(c.ready_s is not None for n in nodes for c in n.children):
            return
        time.sleep(0.05)
    sys.exit("the worker did not become ready; see demo-output/worker.log")


def sparkline(values: list[int], width: int = 60) -> str:
    if not values:
        return ""
    step = max(1, len(values) // width)
    points = [max(values[i : i + step]) for i in range(0, len(values), step)]
    top = max(points) or 1
    return "".join(BARS[min(8, round(v / top * 8))] for v in points)


def show_progress(done: int, total: int, lengths: dict[str, int], elapsed: float, tty: bool) -> None:
    width = 30
    filled = int(width * done / total) if total else width
    queues = "  ".join(f"{name}: {n:>5}" for name, n in lengths.items())
    bar = f"[{'#' * filled}{'.' * (width - filled)}]"
    line = f"{bar} {done:>5}/{total} tasks done  {elapsed:5.1f} s  waiting: {queues}"
    print("\r" + line if tty else line, end="" if tty else "\n", flush=True)


def send_wave(shop: Any, wave: tuple[int, ...]) -> list[Any]:
    images, receipts, charges, reports, short = wave
    results = shop.resize_image.apply_many([(i,) for i in range(images)])
    results += shop.send_receipt.apply_many([(i,) for i in range(receipts)])
    results += shop.charge_card.apply_many([(i, 100 * i) for i in range(charges)])
    results += shop.build_report.apply_many([(i,) for i in range(reports)])
    results += shop.resize_image.apply_many([(i,) for i in range(short)], queue="celery")
    return results


def drive(shop: Any, monitor: Any) -> Run:
    """Send the waves, let the monitor sample every 0.25 s, until everything ran."""
    run = Run()
    alerting: set[str] = set()
    total = sum(sum(wave) for wave in WAVES)
    waves = [
        tuple(n // SLICES + (n % SLICES if i == SLICES - 1 else 0) for n in wave)
        for wave in WAVES
        for i in range(SLICES)
    ]
    tty = sys.stdout.isatty()
    shop.resize_image.apply_many([(i,) for i in range(UNSERVED_TASKS)], queue=UNSERVED_QUEUE)
    started = time.monotonic()
    last_print = 0.0
    while True:
        now = time.monotonic()
        if waves:
            wave = waves.pop(0)
            run.results += send_wave(shop, wave)
            run.sent += sum(wave)
        state = monitor.sample()
        lengths = {q.name: q.length for q in state.queues if q.name in QUEUES}
        for name, n in lengths.items():
            run.history[name].append(n)
        for view in state.queues:
            peaks = run.peaks.setdefault(view.name, [0.0, 0.0])
            peaks[0] = max(peaks[0], view.arrival_rate or 0.0)
            peaks[1] = max(peaks[1], view.service_rate or 0.0)
        for alert in state.alerts:
            if alert["key"] not in alerting:
                print(("\n" if tty else "") + f"  ALERT {alert['level']}: {alert['message']}")
        alerting = {alert["key"] for alert in state.alerts}
        if now - last_print >= (0.1 if tty else 1.0):
            show_progress(run.sent - sum(lengths.values()), total, lengths, now - started, tty)
            last_print = now
        if not waves and not any(lengths.values()):
            break
        time.sleep(max(0.0, MONITOR_INTERVAL_S - (time.monotonic() - now)))
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while unfinished := [r for r in run.results if r.state in ("PENDING", "STARTED", "RETRY")]:
        if time.monotonic() > deadline:
            listed = ", ".join(f"{r.id} ({r.state})" for r in unfinished[:10])
            sys.exit(
                f"{len(unfinished)} task(s) did not finish {SETTLE_TIMEOUT_S:.0f} s after the queues "
                f"drained: {listed}; see demo-output/worker.log and `celeriac inspect`"
            )
        time.sleep(0.2)  # a retry with backoff may still be waiting for its countdown
    run.elapsed = time.monotonic() - started
    show_progress(total, total, dict.fromkeys(QUEUES, 0), run.elapsed, tty)
    if tty:
        print()
    return run


def summarise(app: Any, run: Run, monitor: Any, nodes: list[Any], code: int) -> None:
    from celeriac.observe import promexport
    from celeriac.observe.memview import memory_lines
    from celeriac.observe.top import frame

    states = Counter(r.state for r in run.results)
    retried = sum(1 for r in run.results if r.retries)
    print("\n== what the monitor saw ==")
    for name, values in run.history.items():
        print(f"queue length {name:<10} peak {max(values):>5}  {sparkline(values)}")
    stall = longest_stall(run.history["celery"])
    if stall >= 0.5:
        print(
            f"            the celery queue stood still for {stall:.1f} s: both children were running long\n"
            "            reports while short tasks waited behind them (mixed workloads belong on\n"
            "            separate queues and workers: see docs/worker.md, 'Prefetch')"
        )
    for name, (arrivals, service) in ((q, run.peaks[q]) for q in QUEUES if q in run.peaks):
        print(
            f"rates        {name:<10} arrivals up to {arrivals:>6,.0f}/s   service up to {service:>6,.0f}/s"
        )
    print("\nalerts (the monitor's history; a webhook or command gets the same events):")
    for alert in reversed(monitor.history.alerts(0)):
        lasted = (
            "still active"
            if alert["cleared_at"] is None
            else (f"cleared after {alert['cleared_at'] - alert['fired_at']:.1f} s")
        )
        print(f"  {alert['level']:<8} {lasted:<22} {alert['message']}")
    print("\n== celeriac top ==")
    print(frame(monitor.current()))
    metrics = promexport.render(promexport.registry_for(monitor.current)).decode().splitlines()
    wanted = ("celeriac_queue_length{", "celeriac_tasks_total{", "celeriac_worker_rss_bytes{")
    print("\n== /metrics (a few of the lines Prometheus scrapes) ==")
    print("\n".join([line for line in metrics if line.startswith(wanted)][:8]))
    rate = run.sent / run.elapsed
    print(f"\nthroughput  {run.sent} tasks in {run.elapsed:.1f} s = {rate:,.0f} tasks/s (reports included)")
    print("outcomes    " + ", ".join(f"{state} {n}" for state, n in sorted(states.items())))
    print(f"retried     {retried} tasks ran more than once (mail server busy, backoff)")
    print(f"dead letters {app.broker.dead_letter_count()}")
    for node in nodes:
        print(f"\nworker {node.node}: {node.tasks} task runs ({node.failed} raised); its memory report:")
        print("\n".join(memory_lines(node)))
    print(f"\nthe worker stopped with exit code {code} after a warm shutdown (SIGTERM).")
    print("The failures are intended: declined cards fail for good; busy mail servers are retried.")
    print("The leak is intended too: demo.build_report keeps every report it renders in a module-level dict.")
    print(
        "\nWatch your own queues the same way: celeriac monitor -A yourapp --web "
        "(dashboard and /metrics on http://127.0.0.1:5555), or celeriac top -A yourapp."
    )


def main() -> int:
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir()
    os.environ["DEMO_BROKER_URL"] = f"sqlite:///{OUT / 'demo.db'}"
    sys.path.insert(0, str(HERE))
    import demo_tasks as shop

    from celeriac.observe.history import History
    from celeriac.observe.monitor import Monitor
    from celeriac.observe.records import WorkerStats

    # the waves arrive faster than two children serve them: the alerts fire, then clear
    shop.app.conf.update(monitor_overload_after=OVERLOAD_AFTER_S, monitor_thresholds={"*": {"length": 4000}})
    monitor = Monitor(shop.app, History(OUT / "monitor.db"), interval=MONITOR_INTERVAL_S, sinks={})
    logging.getLogger("celeriac.monitor").setLevel(logging.CRITICAL)  # the demo prints alerts itself

    print("celeriac demo: one worker node with 2 child processes on the embedded SQLite broker")
    print(f"  broker file {OUT / 'demo.db'}\n  worker log  {OUT / 'worker.log'}\n")
    proc = start_worker()
    try:
        wait_ready(shop.app, proc)
        run = drive(shop, monitor)
        purged = shop.app.broker.purge(UNSERVED_QUEUE)
        print(
            f"\n{purged} thumbnails went to {UNSERVED_QUEUE!r}, a queue no worker consumes (the "
            f"no-consumer alert); `celeriac worker -Q {UNSERVED_QUEUE}` would run them, the demo purges them"
        )
        for _ in range(4):  # children report every second, heartbeats every 0.5 s: the last tasks
            time.sleep(0.4)
            monitor.sample()
        nodes = [WorkerStats.from_json(n.payload) for n in shop.app.broker.node_stats()]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        code = proc.wait(timeout=30)
    try:
        summarise(shop.app, run, monitor, nodes, code)
    finally:
        monitor.close()
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
