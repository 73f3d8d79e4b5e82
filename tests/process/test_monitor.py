"""The monitor against real workers: an overloaded queue raises the alert with a drain estimate,
and a second worker clears it."""

from __future__ import annotations

import http.server
import shlex
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from celeriac.observe.history import History
from celeriac.observe.monitor import Monitor, MonitorState, QueueView
from tests.process.harness import Worker, wait_until
from tests.process.monitoring import monitor_sees_the_runs_of_celeriac_workers

pytestmark = pytest.mark.process

TASK_S = 0.05
#: one child serves about 1 / TASK_S = 20 tasks/s (less with overhead); send 1.6 times that
SEND_PER_S = 32.0
WINDOW_S = 6.0


class Hook(http.server.BaseHTTPRequestHandler):
    received: list[dict]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append(orjson.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict]]]:
    received: list[dict] = []
    handler = type("Handler", (Hook,), {"received": received})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/alerts", received
    server.shutdown()
    server.server_close()


class Producer:
    """Sends ``run`` tasks at a steady rate on a thread until stopped."""

    def __init__(self, app, per_s: float) -> None:
        self.app, self.period, self.sent = app, 1.0 / per_s, 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(self.period):  # pacing the load, not waiting for an event
            self.app.send_task("run", [f"m{self.sent}", TASK_S])
            self.sent += 1

    def __enter__(self) -> Producer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)


def celery_view(state: MonitorState) -> QueueView:
    return next(q for q in state.queues if q.name == "celery")


def test_overload_alert_fires_with_a_drain_estimate_and_clears_when_a_second_worker_starts(
    app, workers, tmp_path: Path, webhook
):
    url, received = webhook
    app.conf.update(monitor_overload_after=WINDOW_S, monitor_webhook_url=url, monitor_alert_repeat=3600)
    monitor = Monitor(app, History(tmp_path / "history.db"), interval=0.25)
    states: list[MonitorState] = []
    stop = threading.Event()
    sampler = threading.Thread(target=monitor.run, args=(stop, states.append), daemon=True)
    sampler.start()
    try:
        workers("-c", "1", "--prefetch-multiplier", "1", "-n", "first@%h").wait_ready(1)
        with Producer(app, SEND_PER_S):

            def overloaded() -> MonitorState | None:
                state = states[-1] if states else None
                return state if state and any(a["kind"] == "overload" for a in state.alerts) else None

            fired = wait_until(overloaded, 40, "the overload alert")
            view = celery_view(fired)
            # arrivals are what the producer sends; one child serves fewer
            assert view.arrival_rate == pytest.approx(SEND_PER_S, rel=0.35), view
            assert view.service_rate < view.arrival_rate, view
            assert view.service_rate == pytest.approx(1 / TASK_S, rel=0.4), view
            assert view.mean_runtime_s == pytest.approx(TASK_S, rel=0.5), view
            assert view.drain_s is None  # it does not drain at this rate
            assert TASK_S <= view.p95 <= 0.1, view  # run-time histogram: the (50 ms, 100 ms] bucket
            # one more process (serving what this one does) is enough, and then the backlog
            # drains at (service + that - arrivals) per second
            assert view.extra_processes == 1, view
            assert view.process_rate == pytest.approx(view.service_rate), view
            expected = view.length / (2 * view.service_rate - view.arrival_rate)
            assert view.drain_with_extra_s == pytest.approx(expected, rel=0.01)
            assert 0 < view.drain_with_extra_s < 120
            (alert,) = [a for a in fired.alerts if a["kind"] == "overload"]
            assert alert["level"] == "critical"
            assert "queue 'celery' is overloaded" in alert["message"]
            assert "1 more worker process(es)" in alert["message"]
            assert "drain the backlog in about" in alert["message"]

            workers("-c", "1", "--prefetch-multiplier", "1", "-n", "second@%h").wait_ready(1)

            def cleared() -> MonitorState | None:
                state = states[-1]
                return state if not any(a["kind"] == "overload" for a in state.alerts) else None

            after = celery_view(wait_until(cleared, 40, "the overload alert to clear"))
            assert not after.overloaded
            assert after.processes == 2
            # with the second worker the queue drains: a finite estimate once rates settle
            settled = wait_until(
                lambda: (v := celery_view(states[-1])).drain_s is not None and v.window_s >= WINDOW_S and v,
                40,
                "a drain estimate",
            )
            assert settled.service_rate > settled.arrival_rate
    finally:
        stop.set()
        sampler.join(10)
        monitor.close()
    # the webhook got the alert once when it fired and once when it cleared
    overload = [(e["state"], e["queue"]) for e in received if e["kind"] == "overload"]
    assert overload == [("firing", "celery"), ("cleared", "celery")]
    # and the history kept it, with both times
    (stored,) = [a for a in History(tmp_path / "history.db").alerts(0) if a["kind"] == "overload"]
    assert stored["cleared_at"] > stored["fired_at"]


def test_the_monitor_sees_the_runs_of_celeriac_workers(app, workers, runs):
    monitor_sees_the_runs_of_celeriac_workers(app, workers, runs)


class MonitorProcess(Worker):
    """``celeriac monitor`` as a subprocess (its own session, killed by pid at the end)."""

    def command(self) -> list[str]:
        return [sys.executable, "-m", "celeriac", "monitor", "-A", "proc_app", *self.args]


def test_monitor_command_alerts_through_its_hook_and_stops_on_sigterm(app, env, tmp_path: Path):
    hook_out = tmp_path / "hook.jsonl"
    hook = f"import sys; open({str(hook_out)!r}, 'ab').write(sys.stdin.buffer.read() + b'\\n')"
    monitor_env = {
        **env,
        "CELERIAC_MONITOR_THRESHOLDS": '{"*": {"length": [3, 100]}}',
        "CELERIAC_MONITOR_ALERT_COMMAND": shlex.join([sys.executable, "-c", hook]),
    }
    history = tmp_path / "history.db"
    for i in range(5):
        app.send_task("run", [f"w{i}"])
    proc = MonitorProcess(monitor_env, ["--interval", "0.2", "--history", str(history)]).start()
    try:
        proc.wait_for(r"monitoring sqlite:///.* every 0\.2 s; history .*history\.db; alerts to log, command")
        proc.wait_for(r"ALERT WARNING: queue 'celery': messages waiting 5 >= warning level 3")
        wait_until(lambda: hook_out.exists() and hook_out.read_text().count("\n") >= 1, 20, "the hook to run")
        (event,) = [orjson.loads(line) for line in hook_out.read_text().splitlines()]
        assert (event["state"], event["key"], event["level"]) == ("firing", "length:celery", "warning")
        proc.send(signal.SIGTERM)
        assert proc.wait_exit(20) == 0
        proc.wait_for(r"stopping \(SIGTERM\)")
    finally:
        proc.cleanup()
    (stored,) = History(history).alerts(0)
    assert stored["key"] == "length:celery" and stored["cleared_at"] is None
    assert History(history).latest()["celery"].ready == 5
