"""The monitor's web server: the JSON of /api/state and /api/history, static files, /metrics, the
token and the loopback rule, on a real socket with an in-process monitor on an SQLite broker."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path

import orjson
import pytest

from celeriac import Celeriac
from celeriac.errors import ConfigurationError
from celeriac.observe.history import History, QueuePoint
from celeriac.observe.monitor import Monitor, QueueView
from celeriac.observe.records import RUNTIME_BUCKETS, ChildStats, TaskRuns, WorkerStats
from celeriac.observe.web import WebServer, is_loopback, queue_series

STEPS = 4
ARRIVE, SERVE = 3, 2


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def heartbeat(app: Celeriac, finished: int) -> None:
    buckets = [0] * (len(RUNTIME_BUCKETS) + 1)
    buckets[bisect_left(RUNTIME_BUCKETS, 0.05)] = finished
    runs = [TaskRuns("celery", "web.work", finished, 0, 0, 0, finished * 0.05, buckets)]
    children = [
        ChildStats(
            0, 4001, 1.0, tasks=finished, rss_kib=40_000, uss_kib=12_000, peak_rss_kib=41_000, prefetch=4
        ),
        ChildStats(1, 4002, 1.0, running="web.work", rss_kib=39_000, uss_kib=11_000, prefetch=4),
    ]
    stats = WorkerStats("w1@host", 4000, 1.0, 0.0, ["celery"], 2, "4", 30_000, children=children, runs=runs)
    app.broker.put_node_stats(stats.node, stats.to_json(), 3600)


@dataclass
class Setup:
    app: Celeriac
    monitor: Monitor
    clock: Clock


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    """A monitor that sampled 1 + STEPS times, a second apart: 3 arrive and 2 finish a second."""
    app = Celeriac("web", broker=f"sqlite:///{tmp_path}/b.db")

    @app.task(name="web.work")
    def work(x: int) -> int:
        return x

    clock = Clock(time.time() - 60)
    heartbeat(app, 0)
    monitor = Monitor(app, History(tmp_path / "h.db"), interval=1.0, sinks={}, clock=clock)
    monitor.sample()
    finished = 0
    for step in range(STEPS):
        clock.now += 1.0
        for i in range(ARRIVE):
            work.delay(step * 10 + i)
        app.broker.ack(app.broker.fetch(["celery"], SERVE, 0, "test-consumer"))
        finished += SERVE
        heartbeat(app, finished)
        monitor.sample()
    yield Setup(app, monitor, clock)
    monitor.close()
    app.close()


@pytest.fixture
def serve(setup: Setup) -> Iterator[Callable[..., WebServer]]:
    servers: list[WebServer] = []

    def start(bind: str = "127.0.0.1:0", token: str | None = None) -> WebServer:
        server = WebServer(setup.monitor, bind, token)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        return orjson.loads(self.body)


def get(server: WebServer, path: str, headers: dict[str, str] | None = None) -> Answer:
    request = urllib.request.Request(server.url.rstrip("/") + path, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return Answer(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return Answer(exc.code, dict(exc.headers), exc.read())


def test_state_has_every_queue_field_live_nodes_and_alerts(serve):
    server = serve()
    assert server.port > 0 and server.url == f"http://127.0.0.1:{server.port}/"
    answer = get(server, "/api/state")
    assert answer.status == 200 and answer.headers["Content-Type"] == "application/json"
    assert answer.headers["Cache-Control"] == "no-store"
    state = answer.json()
    assert {
        "at",
        "broker",
        "interval",
        "sample_s",
        "error",
        "queues",
        "nodes",
        "alerts",
        "recent_alerts",
    } <= set(state)
    assert state["broker"].startswith("sqlite://") and state["error"] is None
    (queue,) = [q for q in state["queues"] if q["name"] == "celery"]
    assert set(queue) >= {f.name for f in fields(QueueView)}
    assert queue["length"] == STEPS * (ARRIVE - SERVE)
    assert queue["service_rate"] == pytest.approx(SERVE)
    assert queue["arrival_rate"] == pytest.approx(ARRIVE)
    # it rose every second with arrivals above service, not yet for a whole overload window
    assert queue["state"] == "growing" and queue["overloaded"] is False
    (node,) = state["nodes"]
    assert node["node"] == "w1@host" and node["concurrency"] == 2 and node["master_rss_kib"] == 30_000
    assert node["queues"] == ["celery"] and "broker_pool" in node
    first, second = node["children"]
    assert first == {
        "index": 0,
        "pid": 4001,
        "rss_kib": 40_000,
        "uss_kib": 12_000,
        "peak_rss_kib": 41_000,
        "prefetch": 4,
        "tasks": STEPS * SERVE,
        "failed": 0,
        "running": None,
    }
    assert second["running"] == "web.work"
    assert state["alerts"] == [] and state["recent_alerts"] == []


def test_state_lists_active_and_recent_alerts(setup, serve):
    setup.monitor.app.conf.monitor_thresholds = {"*": {"length": [2, 100]}}
    setup.clock.now += 1.0
    setup.monitor.sample()
    state = get(serve(), "/api/state").json()
    (alert,) = state["alerts"]
    assert alert["kind"] == "length" and alert["level"] == "warning" and "'celery'" in alert["message"]
    (recent,) = state["recent_alerts"]
    assert recent["key"] == "length:celery" and recent["cleared_at"] is None


def test_history_arrays_have_equal_lengths_and_rates_from_the_counters(serve):
    history = get(serve(), "/api/history").json()
    assert history["range"] == 3600
    queue = history["queues"]["celery"]
    names = ("t", "length", "ready", "reserved", "running", "oldest_age", "arrival_rate", "service_rate")
    assert set(names) | {"p50", "p95", "p99"} <= set(queue)
    assert {len(values) for values in queue.values()} == {STEPS + 1}
    assert queue["length"] == [step * (ARRIVE - SERVE) for step in range(STEPS + 1)]
    # the first point has nothing before it
    assert queue["arrival_rate"] == [None, *[pytest.approx(ARRIVE)] * STEPS]
    assert queue["service_rate"] == [None, *[pytest.approx(SERVE)] * STEPS]
    node = history["nodes"]["w1@host"]
    assert set(node) == {"t", "children", "master_rss_kib", "children_rss_kib"}
    assert node["children"] == [2] * (STEPS + 1)
    assert node["children_rss_kib"] == [79_000] * (STEPS + 1)


def test_a_short_range_keeps_the_last_points(serve):
    history = get(serve(), "/api/history?range=2.5").json()
    queue = history["queues"]["celery"]
    # a short range keeps only the last points, each with the rates stored for its sample
    assert len(queue["t"]) == 3
    assert queue["arrival_rate"] == [pytest.approx(ARRIVE)] * 3
    assert queue["service_rate"] == [pytest.approx(SERVE)] * 3


def test_points_stored_without_rates_get_them_from_the_counters():
    """Rows an older monitor wrote have no stored rates: the counters' change stands in."""
    old = [QueuePoint(100.0 + i, "celery", 0, 0, 0, 0, finished=4 * i, arrived=6 * i) for i in range(3)]
    new = QueuePoint(103.0, "celery", 0, 0, 0, 0, finished=12, arrived=18, arrival_rate=7.0, service_rate=5.0)
    series = queue_series([*old, new], rates_from=102.5)
    assert series["service_rate"] == [None, 4.0, 4.0, 5.0]
    assert series["arrival_rate"] == [None, 6.0, 6.0, 7.0]
    # a newer sample whose rates were unknown stays unknown, not a guess from the counters
    unknown = QueuePoint(104.0, "celery", 0, 0, 0, 0, finished=20, arrived=30)
    assert queue_series([new, unknown], rates_from=102.5)["service_rate"] == [5.0, None]


@pytest.mark.parametrize("bad", ["abc", "0", "-5", "nan", "inf", ""])
def test_a_bad_range_is_a_400_with_a_message(serve, bad):
    answer = get(serve(), f"/api/history?range={bad}")
    assert answer.status == 400
    assert b"range must be a number of seconds > 0" in answer.body
    assert answer.body.count(b"\n") == 1


def test_a_long_range_is_clamped_to_30_days(serve):
    assert get(serve(), "/api/history?range=99999999").json()["range"] == 30 * 86400


def test_static_files_with_types_and_cache_headers(serve):
    server = serve()
    js = get(server, "/static/dashboard.js")
    assert js.status == 200 and js.headers["Content-Type"].startswith("text/javascript")
    assert "max-age" in js.headers["Cache-Control"] and js.headers["ETag"]
    assert get(server, "/static/dashboard.js", {"If-None-Match": js.headers["ETag"]}).status == 304
    assert get(server, "/static/dashboard.css").headers["Content-Type"].startswith("text/css")
    assert get(server, "/static/uPlot.iife.min.js").body.startswith(b"/*! https://github.com/leeoniya/uPlot")
    assert get(server, "/static/uPlot.LICENSE").headers["Content-Type"].startswith("text/plain")
    page = get(server, "/")
    assert page.status == 200 and page.headers["Content-Type"] == "text/html; charset=utf-8"
    for element in ("alerts", "queues", "chart-length", "chart-rates", "chart-runtime", "chart-memory"):
        assert f'id="{element}"'.encode() in page.body
    assert b"http://" not in page.body.replace(b"https://github.com/leeoniya/uPlot", b"")


@pytest.mark.parametrize(
    "path", ["/static/../x", "/static/../web.py", "/static/%2e%2e/web.py", "/static/..%2fweb.py", "/static/"]
)
def test_static_paths_do_not_escape_the_directory(serve, path):
    answer = get(serve(), path)
    assert answer.status == 404
    assert b"import" not in answer.body


def test_metrics_healthz_and_unknown_paths(serve):
    server = serve()
    metrics = get(server, "/metrics")
    assert metrics.status == 200 and metrics.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert b'celeriac_queue_length{queue="celery"} 4.0' in metrics.body
    assert get(server, "/healthz").body == b"ok\n"
    assert get(server, "/nothing-here").status == 404


def test_an_error_in_a_handler_is_a_500_and_the_server_carries_on(setup, serve, monkeypatch, caplog):
    server = serve()

    def broken() -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(setup.monitor, "current", broken)
    answer = get(server, "/api/state")
    assert answer.status == 500 and answer.body == b"internal error: RuntimeError (see the monitor's log)\n"
    assert "the dashboard failed to answer GET /api/state" in caplog.text
    monkeypatch.undo()
    assert get(server, "/api/state").status == 200


def test_only_loopback_is_served_without_a_token(setup, serve):
    with pytest.raises(ConfigurationError) as info:
        WebServer(setup.monitor, "0.0.0.0:0", None)
    message = str(info.value)
    assert "monitor_web_token" in message and "--token" in message and "without a token" in message
    serve("localhost:0").stop()
    serve("127.0.0.2:0").stop()
    assert serve("0.0.0.0:0", "s3cret").port > 0
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.9.9.9", "::1", "localhost", "LOCALHOST"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.1", "example.com", "127.0.0.1.nip.io"))


def test_a_bad_bind_is_a_configuration_error(setup):
    with pytest.raises(ConfigurationError, match="HOST:PORT"):
        WebServer(setup.monitor, "127.0.0.1", None)


def test_the_token_guards_everything_but_healthz(serve):
    server = serve(token="s3cret")
    for path in ("/", "/api/state", "/api/history", "/metrics", "/static/dashboard.js"):
        denied = get(server, path)
        assert denied.status == 401, path
        assert denied.body.count(b"\n") == 1 and b"Bearer" in denied.body
    assert get(server, "/api/state?token=wrong").status == 401
    assert get(server, "/api/state", {"Authorization": "Bearer wrong"}).status == 401
    assert get(server, "/healthz").status == 200
    bearer = {"Authorization": "Bearer s3cret"}
    assert get(server, "/api/state", bearer).json()["queues"][0]["name"] == "celery"
    assert get(server, "/metrics", bearer).status == 200
    assert get(server, "/api/history?token=s3cret").status == 200
    page = get(server, "/?token=s3cret")
    assert page.status == 200
    cookie = page.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "s3cret" not in cookie
    jar = {"Cookie": cookie.split(";")[0]}
    assert get(server, "/api/state", jar).status == 200
    assert get(server, "/static/uPlot.min.css", jar).status == 200
    assert get(server, "/api/state", {"Cookie": "celeriac_monitor=forged"}).status == 401
