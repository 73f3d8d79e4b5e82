"""The monitor's arithmetic and bookkeeping, on the in-memory broker with a controlled clock:
rates from heartbeats, overload and its clearing, thresholds, alerts and their sinks, history tiers,
Prometheus output, and the monitor and top commands."""

from __future__ import annotations

import dataclasses
import logging
import sys
from bisect import bisect_left
from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from celeriac import Celeriac
from celeriac.cli.main import main
from celeriac.observe import promexport
from celeriac.observe.alerts import AlertBook, Condition, Outbox, command_sink
from celeriac.observe.history import History, QueuePoint
from celeriac.observe.monitor import Monitor, Totals, quantile
from celeriac.observe.records import RUNTIME_BUCKETS, ChildStats, SlotCounts, TaskRuns, WorkerStats
from celeriac.observe.top import frame


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def task_runs(
    n: int, seconds: float = 0.05, queue: str = "celery", task: str = "t", failed: int = 0
) -> TaskRuns:
    buckets = [0] * (len(RUNTIME_BUCKETS) + 1)
    buckets[bisect_left(RUNTIME_BUCKETS, seconds)] = n
    return TaskRuns(queue, task, n - failed, failed, 0, 0, n * seconds, buckets)


def stats(node: str, runs: list[TaskRuns], pid: int = 1, started_at: float = 1.0, **kw) -> WorkerStats:
    values = {"queues": ["celery"], "concurrency": 1, "prefetch": "4", "master_rss_kib": 30_000, **kw}
    return WorkerStats(node, pid, started_at, 0.0, runs=runs, **values)


def beat(app: Celeriac, worker: WorkerStats) -> None:
    app.broker.put_node_stats(worker.node, worker.to_json(), 3600)


@pytest.fixture
def app() -> Celeriac:
    app = Celeriac("mon", broker="memory://")
    app.conf.update(monitor_overload_after=10.0)
    yield app
    app.close()


def monitor_for(app: Celeriac, tmp_path: Path, clock: Clock, **kw) -> Monitor:
    return Monitor(app, History(tmp_path / "h.db"), interval=1.0, sinks={}, clock=clock, **kw)


def serve(app: Celeriac, count: int) -> None:
    got = app.broker.fetch(["celery"], count, 0, "c")
    app.broker.ack(got)


def step(app, monitor, clock, arrive: int, serve_n: int, finished: int) -> None:
    clock.now += 1.0
    for _ in range(arrive):
        app.send_task("t")
    serve(app, serve_n)
    beat(app, stats("w1", [task_runs(finished)]))
    monitor.sample()


def test_arrival_and_service_rates_overload_and_its_clearing(app, tmp_path):
    clock = Clock()
    beat(app, stats("w1", [task_runs(0)]))
    monitor = monitor_for(app, tmp_path, clock)
    monitor.sample()
    finished = 0
    for _ in range(12):  # 30 arrive a second, one process serves 20 (50 ms each)
        finished += 20
        step(app, monitor, clock, 30, 20, finished)
    view = monitor.current().queues[0]
    assert view.service_rate == pytest.approx(20)
    assert view.arrival_rate == pytest.approx(30)
    assert view.mean_runtime_s == pytest.approx(0.05)
    assert view.utilisation == pytest.approx(1.5)
    assert view.overloaded and view.drain_s is None
    # 10/s too many at 50 ms each: one more process; then it drains at 20 + 20 - 30 = 10/s
    assert view.extra_processes == 1
    assert view.drain_with_extra_s == pytest.approx(view.length / 10)
    (alert,) = monitor.current().alerts
    assert alert["kind"] == "overload" and alert["level"] == "critical"
    assert "arrivals 30.0/s > service 20.0/s" in alert["message"]
    assert f"drain the backlog in about {view.length / 10:.0f} s" in alert["message"]
    # a second process: 40 served a second, the queue shrinks; from the 3rd second on it is
    # below where it was half a window (5 s) before, so the overload was last seen in the
    # 2nd, and the alert clears 3 samples later
    cleared_after = None
    for i in range(6):
        finished += 40
        step(app, monitor, clock, 30, 40, finished)
        if cleared_after is None and monitor.current().alerts == []:
            cleared_after = i + 1
    assert cleared_after == 5
    for _ in range(5):  # a whole window at 40 served, 30 arriving; the backlog is not gone yet
        finished += 40
        step(app, monitor, clock, 30, 40, finished)
    view = monitor.current().queues[0]
    assert view.length > 0
    assert view.service_rate == pytest.approx(40) and view.arrival_rate == pytest.approx(30)
    assert view.drain_s == pytest.approx(view.length / 10)
    assert view.wait_s == pytest.approx(view.ready / 40)
    monitor.close()


def steady_backlog(app, tmp_path, clock) -> tuple[Monitor, int]:
    """A monitor that watched a whole window of 20 arriving and 20 served a second, 10 waiting."""
    beat(app, stats("w1", [task_runs(0)]))
    monitor = monitor_for(app, tmp_path, clock)
    for _ in range(10):
        app.send_task("t")
    monitor.sample()
    finished = 0
    for _ in range(12):
        finished += 20
        step(app, monitor, clock, 20, 20, finished)
    assert monitor.current().queues[0].state == "ok"
    return monitor, finished


def test_a_queue_that_starts_rising_is_growing_by_the_second_sample_long_before_the_overload(app, tmp_path):
    clock = Clock()
    monitor, finished = steady_backlog(app, tmp_path, clock)
    states = []
    for _ in range(6):  # 30 arrive a second now, still 20 served
        finished += 20
        step(app, monitor, clock, 30, 20, finished)
        view = monitor.current().queues[0]
        states.append(view.state)
        if view.state == "growing":
            # the row agrees with itself: it will not drain, and says so before any alert
            assert view.arrival_rate > view.service_rate and view.drain_s is None
            assert not view.overloaded and monitor.current().alerts == []
    assert states == ["ok", "growing", "growing", "growing", "growing", "overloaded"]
    (alert,) = monitor.current().alerts
    assert alert["kind"] == "overload"
    for _ in range(4):  # a second process: the queue shrinks, and is ok once the overload clears
        finished += 40
        step(app, monitor, clock, 30, 40, finished)
        states.append(monitor.current().queues[0].state)
    assert states[6:] == ["overloaded", "overloaded", "ok", "ok"]
    monitor.close()


def test_one_noisy_sample_does_not_make_a_queue_growing(app, tmp_path):
    app.conf.monitor_overload_after = 60.0  # the window outlasts the test: no overload here
    clock = Clock()
    monitor, finished = steady_backlog(app, tmp_path, clock)
    states = []
    # 10 more than usual arrive once, and are served the next second
    for arrive, served in ((30, 20), (20, 30), (20, 20), (20, 20)):
        finished += served
        step(app, monitor, clock, arrive, served, finished)
        states.append(monitor.current().queues[0].state)
    assert states == ["ok"] * 4
    # the state is kept by the monitor, not recomputed from one sample: a queue growing for
    # a while stays growing through one sample that shrinks, and leaves after two
    states = []
    for arrive in (30, 30, 30, 15, 30, 30, 10, 10, 10):
        finished += 20
        step(app, monitor, clock, arrive, 20, finished)
        states.append(monitor.current().queues[0].state)
    assert states == ["ok", "growing", "growing", "growing", "growing", "growing", "growing", "ok", "ok"]
    monitor.close()


def queue_states(monitor: Monitor) -> dict[str, float]:
    text = promexport.render(promexport.registry_for(monitor.current)).decode()
    (family,) = [f for f in text_string_to_metric_families(text) if f.name == "celeriac_queue_state"]
    assert family.type == "gauge"
    return {s.labels["state"]: s.value for s in family.samples if s.labels["queue"] == "celery"}


def test_growing_shows_in_top_and_prometheus_beside_overloaded(app, tmp_path):
    clock = Clock()
    monitor, finished = steady_backlog(app, tmp_path, clock)
    assert queue_states(monitor) == {"ok": 1, "growing": 0, "overloaded": 0}
    for _ in range(2):
        finished += 20
        step(app, monitor, clock, 30, 20, finished)
    row = next(line for line in frame(monitor.current()).splitlines() if line.startswith("celery "))
    assert row.endswith(" GROWING") and " never " in row  # the drain column agrees
    assert queue_states(monitor) == {"ok": 0, "growing": 1, "overloaded": 0}
    for _ in range(4):
        finished += 20
        step(app, monitor, clock, 30, 20, finished)
    row = next(line for line in frame(monitor.current()).splitlines() if line.startswith("celery "))
    assert row.endswith(" OVERLOADED") and "GROWING" not in row
    assert queue_states(monitor) == {"ok": 0, "growing": 0, "overloaded": 1}
    text = promexport.render(promexport.registry_for(monitor.current)).decode()
    assert 'celeriac_queue_overloaded{queue="celery"} 1.0' in text
    monitor.close()


def test_a_burst_that_drains_is_not_an_overload(app, tmp_path):
    clock = Clock()
    monitor = monitor_for(app, tmp_path, clock)
    monitor.sample()
    finished = 0
    step(app, monitor, clock, 200, 0, 0)  # a burst, then service catches up
    for _ in range(12):
        finished += 20
        step(app, monitor, clock, 5, 20, finished)
    assert not monitor.current().queues[0].overloaded
    assert monitor.current().alerts == []
    monitor.close()


def test_queues_without_run_counts_get_growth_alone(app, tmp_path):
    """A plain Celery deployment: no celeriac heartbeats, lengths only."""
    clock = Clock()
    monitor = monitor_for(app, tmp_path, clock)
    monitor.sample()
    states = []
    for _ in range(12):
        clock.now += 1.0
        for _ in range(10):
            app.send_task("t")
        monitor.sample()
        states.append(monitor.current().queues[0].state)
    # growing from the growth seen so far, by the second sample; overloaded once a window is full
    assert states[:2] == ["ok", "growing"]
    assert set(states[2 : states.index("overloaded")]) == {"growing"}
    assert states[-1] == "overloaded"
    view = monitor.current().queues[0]
    assert (view.arrival_rate, view.service_rate) == (None, None)
    assert view.growth_rate == pytest.approx(10)
    assert view.overloaded
    alerts = {a["kind"]: a for a in monitor.current().alerts}
    assert "arrival and service rates are unknown" in alerts["overload"]["message"]
    assert alerts.keys() == {"overload", "no_consumer"}, "and nothing took a message in 12 s"
    monitor.close()


def test_oldest_age_is_estimated_first_in_first_out_where_the_broker_cannot_tell(app, tmp_path):
    clock = Clock()
    monitor = monitor_for(app, tmp_path, clock)
    beat(app, stats("w1", [task_runs(0)]))
    monitor.sample()
    for i in range(10):  # 10 arrive a second, 5 are served
        step(app, monitor, clock, 10, 5, 5 * (i + 1))
    view = monitor.current().queues[0]
    # 50 served of 100: the oldest waiting one is number 51, the first of the 6th second's
    # ten (assumed spread evenly over that second)
    assert view.oldest_age_estimated
    assert view.oldest_age == pytest.approx(4.9)
    monitor.close()


def test_worker_counts_are_a_baseline_at_start_and_restarts_count_again():
    totals = Totals()
    totals.add([stats("w1", [task_runs(500)])])  # ran before the monitor started
    assert totals.per_queue()["celery"][0] == 0
    totals.add([stats("w1", [task_runs(530)]), stats("w2", [task_runs(7)], pid=2, started_at=5.0)])
    assert totals.per_queue()["celery"][0] == 30 + 7
    totals.add([stats("w1", [task_runs(4)], pid=9, started_at=9.0)])  # w1 restarted
    finished, failed, busy, buckets = totals.per_queue()["celery"]
    assert finished == 41 and failed == 0 and sum(buckets) == 41
    assert busy == pytest.approx(41 * 0.05)


def test_quantile_interpolates_within_buckets():
    buckets = [0] * (len(RUNTIME_BUCKETS) + 1)
    buckets[RUNTIME_BUCKETS.index(0.1)] = 100  # all in (50 ms, 100 ms]
    assert quantile(buckets, 0.5) == pytest.approx(0.075)
    assert quantile(buckets, 1.0) == pytest.approx(0.1)
    assert quantile([0] * len(buckets), 0.5) is None
    buckets[-1] = 1000  # over the last bound: reported as the last bound
    assert quantile(buckets, 0.99) == RUNTIME_BUCKETS[-1]


def test_threshold_alerts_per_queue_warning_then_critical(app, tmp_path):
    app.conf.monitor_thresholds = {"*": {"length": [5, 20]}, "quiet": {"length": 1000}}
    clock = Clock()
    monitor = monitor_for(app, tmp_path, clock, queues=["quiet"])
    for _ in range(6):
        app.send_task("t")
        app.send_task("t", queue="quiet")
    monitor.sample()
    (alert,) = monitor.current().alerts
    assert (alert["key"], alert["level"]) == ("length:celery", "warning")
    assert alert["message"] == ("queue 'celery': messages waiting 6 >= warning level 5 (monitor_thresholds)")
    for _ in range(20):
        app.send_task("t")
    clock.now += 1
    monitor.sample()
    (alert,) = monitor.current().alerts
    assert alert["level"] == "critical"
    monitor.close()


def test_alerts_fire_once_repeat_at_a_bounded_rate_and_clear(caplog):
    book = AlertBook(repeat_s=60)
    hot = Condition("length:q", "length", "warning", "q", "q is long")
    caplog.set_level(logging.INFO, "celeriac.monitor")
    assert [e["state"] for e in book.update([hot], 0)] == ["firing"]
    assert book.update([hot], 30) == []
    assert [e["state"] for e in book.update([hot], 61)] == ["repeat"]
    assert book.update([hot], 100) == []
    events = book.update([], 130)
    assert [(e["state"], e["since"]) for e in events] == [("cleared", 0)]
    assert book.update([], 140) == []
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "ALERT WARNING: q is long",
        "ALERT WARNING (still): q is long",
        "alert cleared after 130 s: q is long",
    ]


def test_the_command_hook_gets_the_event_on_stdin(tmp_path):
    out = tmp_path / "alerts.jsonl"
    script = f"import sys; open({str(out)!r}, 'ab').write(sys.stdin.buffer.read() + b'\\n')"
    outbox = Outbox({"command": command_sink(f"{sys.executable} -c {script!r}".replace("'", '"', 0))})
    book = AlertBook(60, outbox)
    book.update([Condition("overload:q", "overload", "critical", "q", "q grows")], 5)
    book.update([], 9)
    outbox.close()
    events = [orjson.loads(line) for line in out.read_text().splitlines()]
    assert [(e["state"], e["kind"], e["queue"]) for e in events] == [
        ("firing", "overload", "q"),
        ("cleared", "overload", "q"),
    ]
    assert outbox.sent == 2 and outbox.failed == 0


def test_a_failing_sink_is_logged_and_does_not_stop_the_others(caplog):
    seen = []

    def broken(event):
        raise OSError("connection refused")

    outbox = Outbox({"webhook": broken, "list": seen.append})
    AlertBook(60, outbox).update([Condition("k", "length", "warning", "q", "m")], 0)
    outbox.close()
    assert [e["key"] for e in seen] == ["k"]
    assert outbox.failed == 1
    assert "could not send alert k to the webhook: connection refused" in caplog.text


def test_history_rolls_up_to_minutes_and_hours_and_survives_a_restart(tmp_path):
    path = tmp_path / "h.db"
    history = History(path)
    start = 1_800_000_000.0 - 1_800_000_000.0 % 3600
    for i in range(2 * 3600 // 10 + 1):  # two hours, a sample every 10 s
        t = start + i * 10
        history.add(
            [QueuePoint(t, "q", ready=i % 60, scheduled=0, reserved=0, running=0, finished=i, arrived=i)]
        )
    minutes = history.points(start, start + 7 * 3600 + 1, "q")  # > 6 h: the minute tier
    assert len(minutes) == 120
    assert minutes[0].ready == 5  # the largest of the minute's six samples
    assert minutes[1].finished == 11  # counters: the last value of the minute
    raw = history.points(start, start + 3600, "q")
    assert len(raw) == 361
    history.close()
    again = History(path)
    assert again.latest()["q"].finished == 720
    hours = again.points(start, start + 8 * 86400, "q")  # the hour tier: two whole hours
    assert [(h.t - start, h.finished, h.ready) for h in hours] == [(0, 359, 59), (3600, 719, 59)]
    again.close()


def test_counters_carry_on_after_a_monitor_restart(app, tmp_path):
    clock = Clock()
    beat(app, stats("w1", [task_runs(0)]))
    monitor = monitor_for(app, tmp_path, clock)
    monitor.sample()
    step(app, monitor, clock, 0, 0, 50)
    assert monitor.current().queues[0].finished == 50
    monitor.close()
    restarted = monitor_for(app, tmp_path, clock)
    clock.now += 1
    restarted.sample()  # w1 is a baseline again, and the count goes on from the history
    beat(app, stats("w1", [task_runs(60)]))
    clock.now += 1
    restarted.sample()
    assert restarted.current().queues[0].finished == 60
    restarted.close()


def test_prometheus_output_parses_with_conventional_names(app, tmp_path):
    clock = Clock()
    worker = stats(
        "w1",
        [task_runs(0)],
        children=[ChildStats(0, 11, 0.0, rss_kib=20_000, prefetch=4)],
        broker_pool={"in_use": 1, "waits": 3, "wait_total_s": 0.25},
    )
    beat(app, worker)
    monitor = monitor_for(app, tmp_path, clock)
    monitor.sample()
    worker.runs = [task_runs(10, failed=2)]
    beat(app, worker)
    for _ in range(3):
        app.send_task("t")
    clock.now += 1
    monitor.sample()
    text = promexport.render(promexport.registry_for(monitor.current)).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples
    }
    assert samples[("celeriac_queue_length", (("queue", "celery"),))] == 3
    assert samples[("celeriac_tasks_total", (("queue", "celery"), ("state", "failed"), ("task", "t")))] == 2
    assert (
        samples[("celeriac_tasks_total", (("queue", "celery"), ("state", "succeeded"), ("task", "t")))] == 8
    )
    assert families["celeriac_task_runtime_seconds"].type == "histogram"
    inf = (("le", "+Inf"), ("queue", "celery"), ("task", "t"))
    assert samples[("celeriac_task_runtime_seconds_bucket", inf)] == 10
    assert samples[("celeriac_task_runtime_seconds_count", (("queue", "celery"), ("task", "t")))] == 10
    rss = {k: v for k, v in samples.items() if k[0] == "celeriac_worker_rss_bytes"}
    assert rss == {
        ("celeriac_worker_rss_bytes", (("child", ""), ("node", "w1"), ("role", "master"))): 30_000 * 1024,
        ("celeriac_worker_rss_bytes", (("child", "0"), ("node", "w1"), ("role", "child"))): 20_000 * 1024,
    }
    assert samples[("celeriac_broker_pool_wait_seconds_total", (("node", "w1"),))] == 0.25
    assert samples[("celeriac_broker_pool_in_use", (("node", "w1"),))] == 1
    monitor.close()


def test_monitor_once_prints_the_sample_and_top_draws_frames(tmp_path, capsys, monkeypatch):
    module = tmp_path / "monproj.py"
    module.write_text(
        "from celeriac import Celeriac\n"
        f"app = Celeriac('monproj', broker='sqlite:///{tmp_path}/b.db')\n"
        "app.conf.monitor_thresholds = {'*': {'length': 2}}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import monproj

    for _ in range(3):
        monproj.app.send_task("t")
    assert main(["monitor", "-A", "monproj", "--once", "--json"]) == 0
    data = orjson.loads(capsys.readouterr().out)
    (queue,) = data["queues"]
    assert (queue["name"], queue["length"], queue["ready"]) == ("celery", 3, 3)
    assert queue["oldest_age"] >= 0 and not queue["oldest_age_estimated"]
    assert [a["key"] for a in data["alerts"]] == ["length:celery"]
    assert main(["top", "-A", "monproj", "-n", "2", "--interval", "0.05"]) == 0
    out = capsys.readouterr().out
    assert out.count("celeriac top") == 2
    assert "WARNING: queue 'celery': messages waiting 3 >= warning level 2" in out
    assert "(no live celeriac worker)" in out
    line = next(row for row in out.splitlines() if row.startswith("celery "))
    assert line.split()[:3] == ["celery", "3", "3"]
    assert main(["monitor", "-A", "monproj", "--json"]) == 2
    assert "--json needs --once" in capsys.readouterr().err
    assert main(["monitor", "-A", "monproj", "--once", "--web"]) == 2
    assert "cannot serve --web" in capsys.readouterr().err
    # `status --watch` is the same view
    assert main(["status", "-A", "monproj", "--watch", "-n", "1", "--interval", "0.05"]) == 0
    out = capsys.readouterr().out
    assert out.count("celeriac top") == 1 and "messages waiting 3" in out
    assert main(["status", "-A", "monproj", "memory", "--watch"]) == 2
    assert "drop `memory` and --json" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["top", "-A", "monproj", "-n", "0"])
    assert exited.value.code == 2 and "0 must be 1 or more" in capsys.readouterr().err
    monproj.app.close()


def test_extra_processes_count_the_overhead_of_processes_shared_with_other_queues():
    """Two children serve long reports and tiny thumbnails; thumbnails pile up. One more process
    would serve thumbnails at 1 / (S + o), o being the per-task overhead their busy time leaves."""
    from celeriac.observe.monitor import QueueView

    reports = QueueView("reports", 5, 0, 0, 2, 7, service_rate=4.0, arrival_rate=4.0, mean_runtime_s=0.35)
    thumbs = QueueView(
        "thumbs", 6000, 0, 0, 0, 6000, service_rate=100.0, arrival_rate=700.0, mean_runtime_s=0.0003
    )
    thumbs.overloaded = True
    for view in (reports, thumbs):
        view.processes = 2
    node = stats("w1", [], concurrency=2, queues=["reports", "thumbs"])
    Monitor._capacity([reports, thumbs], [node])
    overhead = (2 - (4 * 0.35 + 100 * 0.0003)) / 104
    assert thumbs.process_rate == pytest.approx(1 / (0.0003 + overhead))
    assert thumbs.extra_processes == 4  # 600/s more at about 176/s each
    assert thumbs.drain_with_extra_s == pytest.approx(6000 / (100 + 4 * thumbs.process_rate - 700))
    assert reports.extra_processes is None  # not overloaded


def no_consumer(monitor: Monitor) -> list[dict]:
    return [a for a in monitor.current().alerts if a["kind"] == "no_consumer"]


def test_a_queue_nobody_consumes_raises_no_consumer_until_a_worker_lists_it(app, tmp_path):
    clock = Clock()
    monitor = monitor_for(app, tmp_path, clock)
    app.send_task("t", queue="orphans")  # routed to a queue no worker was started for
    monitor.sample()
    for _ in range(9):  # 9 s of the 10 s window: not yet
        clock.now += 1.0
        app.send_task("t", queue="orphans")
        monitor.sample()
    assert no_consumer(monitor) == []
    assert next(q for q in monitor.current().queues if q.name == "orphans").unserved_s == 9.0
    clock.now += 1.0
    monitor.sample()
    (alert,) = no_consumer(monitor)
    assert alert["queue"] == "orphans" and alert["level"] == "critical"
    assert "10 message(s) ready and none taken for 10 s" in alert["message"]
    assert "celeriac worker -Q orphans" in alert["message"]
    # a worker that consumes it starts; the alert clears after 3 samples (no flapping)
    beat(app, stats("w1", [], queues=["orphans"]))
    kinds = []
    for _ in range(3):
        clock.now += 1.0
        monitor.sample()
        kinds.append(len(no_consumer(monitor)))
    assert kinds == [1, 1, 0]
    assert next(q for q in monitor.current().queues if q.name == "orphans").unserved_s is None


def test_a_queue_an_unseen_consumer_takes_from_is_served(app, tmp_path):
    # a Celery worker on Redis sends no heartbeat: the length going down shows it is there
    clock = Clock()
    monitor = monitor_for(app, tmp_path, clock)
    for second in range(30):
        clock.now += 1.0
        for _ in range(3):
            app.send_task("t")
        if second % 4 == 3:
            serve(app, 10)  # it takes in bursts, and falls behind: the queue is never empty
        monitor.sample()
        view = monitor.current().queues[0]
        assert view.ready > 0 and (view.unserved_s is None or view.unserved_s < 4)
    assert no_consumer(monitor) == []


def test_a_consumer_the_broker_counts_serves_the_queue(app, tmp_path, monkeypatch):
    # RabbitMQ counts the consumers of any client (a Celery worker's too)
    lengths = app.broker.queue_lengths
    monkeypatch.setattr(
        app.broker,
        "queue_lengths",
        lambda names: [dataclasses.replace(n, consumers=1) for n in lengths(names)],
    )
    clock = Clock()
    monitor = monitor_for(app, tmp_path, clock)
    for _ in range(15):
        clock.now += 1.0
        app.send_task("t")
        monitor.sample()
    assert monitor.current().queues[0].unserved_s is None
    assert no_consumer(monitor) == []


# -- rates on the workers' counting time ----------------------------------------------------------


def counting_worker(second_at: float, n: int) -> WorkerStats:
    """w1's heartbeat: ``n`` runs finished in its one slot, counted 0.3 s before ``second_at``."""
    return stats("w1", [task_runs(n)], counted=[SlotCounts(0, second_at - 0.3, {"celery": n})])


def stored_rates(monitor: Monitor, since: float) -> list[tuple[float, float | None, float | None]]:
    return [
        (p.t - since, p.arrival_rate, p.service_rate)
        for p in monitor.history.points(since, monitor.clock(), "celery")
    ]


@pytest.mark.parametrize("interval", [1.0, 5.0])
def test_stored_rates_follow_the_workers_count_whether_the_monitor_samples_faster_or_slower(
    app, tmp_path, interval
):
    """Heartbeats every 2 s, 50 finished a second: sampled every second, every other sample saw no
    new heartbeat (0, then 100); every 5 s, 4 s and 6 s of runs (40, then 60). Neither, now."""
    clock = Clock()
    start = clock.now
    monitor = Monitor(app, History(tmp_path / "h.db"), interval=interval, sinks={}, clock=clock)
    for second in range(31):
        clock.now = start + second
        for _ in range(60):  # 60 arrive a second, 50 are served: the queue grows 10 a second
            app.send_task("t")
        serve(app, 50)
        if second % 2 == 0:
            beat(app, counting_worker(clock.now, 50 * second))
        if second % interval == 0:
            monitor.sample()
    points = stored_rates(monitor, start)
    assert len(points) == int(30 // interval) + 1
    # from the first sample that has seen two heartbeats on
    known = [(arrival, service) for t, arrival, service in points if t >= 2]
    assert len(known) == len(points) - (2 if interval == 1 else 1)
    assert known == [(pytest.approx(60), pytest.approx(50))] * len(known)
    view = monitor.current().queues[0]
    assert view.service_rate == pytest.approx(50) and view.arrival_rate == pytest.approx(60)
    monitor.close()


def test_the_windows_rates_come_from_the_counts_the_heartbeats_carry(app, tmp_path):
    """Heartbeats every 3 s, sampled every second over a 10 s window: the heartbeats a window's
    ends saw are 9 or 12 s apart (45 or 60 a second by the counters); the counts' times say 50."""
    clock = Clock()
    start = clock.now
    monitor = monitor_for(app, tmp_path, clock)
    views = []
    for second in range(25):
        clock.now = start + second
        for _ in range(60):
            app.send_task("t")
        serve(app, 50)
        if second % 3 == 0:
            beat(app, counting_worker(clock.now, 50 * second))
        monitor.sample()
        if second >= 3:  # two heartbeats seen
            view = monitor.current().queues[0]
            views.append((view.service_rate, view.arrival_rate))
    assert views == [(pytest.approx(50), pytest.approx(60))] * len(views)
    monitor.close()


def test_without_counting_times_an_older_workers_rates_come_from_the_counters_between_samples(app, tmp_path):
    clock = Clock()
    start = clock.now
    beat(app, stats("w1", [task_runs(0)]))  # no `counted`: a worker from before it existed
    monitor = monitor_for(app, tmp_path, clock)
    monitor.sample()
    finished = 0
    for served in (20, 35, 10, 5):
        finished += served
        step(app, monitor, clock, 30, served, finished)
    assert stored_rates(monitor, start) == [
        (0, None, None),
        (1, 30, 20),
        (2, 30, 35),
        (3, 30, 10),
        (4, 30, 5),
    ]
    view = monitor.current().queues[0]
    assert view.service_rate == pytest.approx(70 / 4) and view.arrival_rate == pytest.approx(30)
    monitor.close()


def test_a_queue_an_older_worker_also_consumes_is_rated_on_every_workers_runs(app, tmp_path):
    """During a rolling upgrade: w1 publishes slot counts, w2 (an older version) only its counters.
    Rates from w1's counts alone would leave out w2's runs."""
    clock = Clock()
    start = clock.now
    monitor = monitor_for(app, tmp_path, clock)
    for second in range(12):
        clock.now = start + second
        for _ in range(50):
            app.send_task("t")
        serve(app, 50)
        beat(app, counting_worker(clock.now, 20 * second))
        beat(app, stats("w2", [task_runs(30 * second)], pid=2))
        monitor.sample()
    rates = stored_rates(monitor, start)
    assert rates[1:] == [(t, pytest.approx(50), pytest.approx(50)) for t in range(1, 12)]
    view = monitor.current().queues[0]
    assert view.service_rate == pytest.approx(50) and view.arrival_rate == pytest.approx(50)
    monitor.close()
