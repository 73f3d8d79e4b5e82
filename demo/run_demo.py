"""make demo: a mixed workload through a real worker on the embedded SQLite broker.

Starts ``celeriac worker`` (2 children) as a subprocess, sends a shop's background
jobs in waves (durable and transient queues, short and long tasks, retries and
failures), shows progress while the queues drain, then summarises what the
monitor sees: queue length over time, throughput, per-child task counts and
memory, and how every task ended.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "demo-output"
BARS = " ▁▂▃▄▅▆▇█"


def start_worker() -> tuple[subprocess.Popen[bytes], Path]:
    log = OUT / "worker.log"
    env = {**os.environ, "PYTHONPATH": str(HERE), "DEMO_BROKER_URL": f"sqlite:///{OUT / 'demo.db'}"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celeriac",
            "worker",
            "-A",
            "demo_tasks",
            "-c",
            "2",
            "-l",
            "info",
            "--logfile",
            str(log),
        ],
        cwd=HERE,
        env=env,
        start_new_session=True,
    )
    return proc, log


def wait_ready(app, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"the worker exited at start (code {proc.returncode}); see demo-output/worker.log")
        nodes = app.broker.node_stats()
        if nodes and all(
            c.get("ready_s") is not None
            for n in nodes
            for c in __import__("orjson").loads(n.payload)["children"]
        ):
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


def progress(done: int, total: int, lengths: dict[str, int], elapsed: float, tty: bool) -> None:
    width = 30
    filled = int(width * done / total) if total else width
    queues = "  ".join(f"{name}: {n:>5}" for name, n in lengths.items())
    line = f"[{'#' * filled}{'.' * (width - filled)}] {done:>5}/{total} sent tasks finished  {elapsed:5.1f} s  waiting: {queues}"
    if tty:
        print("\r" + line, end="", flush=True)
    else:
        print(line, flush=True)


def main() -> int:
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir()
    os.environ["DEMO_BROKER_URL"] = f"sqlite:///{OUT / 'demo.db'}"
    sys.path.insert(0, str(HERE))
    import demo_tasks as shop
    from celeriac.observe.records import WorkerStats

    app = shop.app
    print("celeriac demo: 1 worker node, 2 child processes, embedded SQLite broker")
    print(f"  broker file: {OUT / 'demo.db'}   worker log: {OUT / 'worker.log'}\n")
    proc, _log = start_worker()
    try:
        wait_ready(app, proc)
        results = []
        history: dict[str, list[int]] = {"celery": [], "transient": []}
        started = time.monotonic()
        waves = [(2000, 1500, 8, 300, 140), (3000, 2500, 8, 400, 140), (1000, 1000, 8, 200, 70)]
        total = sum(sum(w) for w in waves)
        tty = sys.stdout.isatty()
        next_wave = started
        sent = 0
        last_print = 0.0
        while True:
            now = time.monotonic()
            if waves and now >= next_wave:
                short, images, reports, receipts, charges = waves.pop(0)
                results += shop.resize_image.apply_many([(i,) for i in range(images)])
                results += shop.send_receipt.apply_many([(i,) for i in range(receipts)])
                results += shop.charge_card.apply_many([(i, 100 * i) for i in range(charges)])
                results += shop.build_report.apply_many([(i,) for i in range(reports)])
                results += shop.resize_image.apply_many([(i,) for i in range(short)], queue="celery")
                sent += short + images + reports + receipts + charges
                next_wave = now + 1.5
            lengths = {name: app.broker.queue_length(name).total for name in history}
            for name, n in lengths.items():
                history[name].append(n)
            waiting = sum(lengths.values())
            if now - last_print >= (0.1 if tty else 1.0):
                progress(sent - waiting, total, lengths, now - started, tty)
                last_print = now
            if not waves and waiting == 0:
                break
            time.sleep(0.1)
        progress(total, total, {k: 0 for k in history}, time.monotonic() - started, tty)
        print()
        states = Counter(r.state for r in results)
        while states.get("PENDING", 0) or states.get("RETRY", 0) or states.get("STARTED", 0):
            time.sleep(0.1)
            states = Counter(r.state for r in results)
        elapsed = time.monotonic() - started
        time.sleep(0.6)  # one more heartbeat, so the statistics include the last tasks
        nodes = [WorkerStats.from_json(n.payload) for n in app.broker.node_stats()]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        code = proc.wait(timeout=30)
    retried = sum(1 for r in results if r.retries)
    print("\n== what the monitor saw ==")
    for name, values in history.items():
        print(f"queue length {name:<10} peak {max(values):>5}  {sparkline(values)}")
    print(
        f"\nthroughput: {total} tasks in {elapsed:.1f} s = {total / elapsed:,.0f} tasks/s (including the long reports)"
    )
    print("outcomes:   " + ", ".join(f"{state} {n}" for state, n in sorted(states.items())))
    print(f"retried:    {retried} tasks succeeded or failed after at least one retry")
    print(f"dead letters: {app.broker.dead_letter_count()}")
    for node in nodes:
        print(
            f"\nworker {node.node}: {node.tasks} task runs ({node.failed} raised), master RSS {node.master_rss_kib} KiB"
        )
        for child in node.children:
            print(
                f"  child {child.index} (pid {child.pid}): {child.tasks:>6} tasks   RSS {child.rss_kib or 0:>6} KiB   own memory (USS) {child.uss_kib or 0:>6} KiB"
            )
        if node.exits:
            print("  child exits: " + ", ".join(f"{reason} {n}" for reason, n in node.exits.items()))
    print(f"\nworker stopped with exit code {code} after a warm shutdown (SIGTERM).")
    print("failures above are intended: declined cards fail for good, busy mail servers are retried.")
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
