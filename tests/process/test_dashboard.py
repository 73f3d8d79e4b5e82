"""The dashboard in a real headless Chromium: the alert banner, the queue table and the uPlot charts
show what the monitor sampled, and the page follows new samples without a reload."""

from __future__ import annotations

import os
import time
from bisect import bisect_left
from collections.abc import Iterator
from pathlib import Path

import pytest

from celeriac import Celeriac
from celeriac.observe.history import History
from celeriac.observe.monitor import Monitor
from celeriac.observe.records import RUNTIME_BUCKETS, ChildStats, SlotCounts, TaskRuns, WorkerStats
from celeriac.observe.web import WebServer

pytestmark = pytest.mark.process

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
QUEUE = "reports"
#: pixels of the queue's colour a drawn line leaves on the chart's canvas, at least
DRAWN_PIXELS = 20

# the number of pixels of the named series' colour on a chart's canvas (0 while not drawn)
_PIXELS_OF_SERIES = """([chart, name]) => {
  const box = document.querySelector(chart);
  const canvas = box && box.querySelector("canvas");
  if (!canvas || !canvas.width) return 0;
  const row = [...box.querySelectorAll(".u-legend .u-series")].find((r) => r.textContent.includes(name));
  if (!row) return 0;
  const rgb = getComputedStyle(row.querySelector(".u-marker")).borderColor.match(/\\d+/g).map(Number);
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let count = 0;
  for (let i = 0; i < data.length; i += 4) {
    const near = Math.abs(data[i] - rgb[0]) + Math.abs(data[i + 1] - rgb[1]) + Math.abs(data[i + 2] - rgb[2]);
    if (near < 40 && data[i + 3] > 200) count++;
  }
  return count;
}"""


# the same, counting only the pixels within ``rows`` of the bottom of the plot, where the value 0 is
_PIXELS_AT_ZERO = """([chart, name, rows]) => {
  const box = document.querySelector(chart);
  const canvas = box && box.querySelector("canvas");
  const over = box && box.querySelector(".u-over");
  if (!canvas || !canvas.width || !over) return -1;
  const row = [...box.querySelectorAll(".u-legend .u-series")].find((r) => r.textContent.includes(name));
  const rgb = getComputedStyle(row.querySelector(".u-marker")).borderColor.match(/\\d+/g).map(Number);
  const scale = canvas.width / canvas.getBoundingClientRect().width;
  const left = Math.floor(parseFloat(over.style.left) * scale);
  const width = Math.ceil(parseFloat(over.style.width) * scale);
  const bottom = Math.round((parseFloat(over.style.top) + parseFloat(over.style.height)) * scale);
  const data = canvas.getContext("2d").getImageData(left, bottom - rows, width, rows + 1).data;
  let count = 0;
  for (let i = 0; i < data.length; i += 4) {
    const near = Math.abs(data[i] - rgb[0]) + Math.abs(data[i + 1] - rgb[1]) + Math.abs(data[i + 2] - rgb[2]);
    if (near < 60 && data[i + 3] > 100) count++;
  }
  return count;
}"""


def chromium_or_skip() -> str:
    if Path(CHROMIUM).exists():
        return CHROMIUM
    message = f"the dashboard test needs Chromium at {CHROMIUM}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}: install Debian's chromium package (apt-get install chromium)")
    pytest.skip(f"{message} (apt-get install chromium)")


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Scene:
    """A monitor on an SQLite broker: QUEUE fills up with nobody consuming it, while a simulated
    worker serves the default queue (so rates, run times and memory have something to show)."""

    def __init__(self, tmp_path: Path) -> None:
        self.app = Celeriac("dash", broker=f"sqlite:///{tmp_path / 'broker.db'}")
        self.app.conf.monitor_thresholds = {"*": {"length": [5, 50]}}

        @self.app.task(name="dash.report")
        def report(n: int) -> int:
            return n

        self.task = report
        self.clock = Clock(time.time() - 120)
        self.finished = 0
        self.monitor = Monitor(
            self.app, History(tmp_path / "history.db"), interval=0.5, sinks={}, clock=self.clock
        )

    def publish(self, count: int, queue: str = QUEUE) -> None:
        for n in range(count):
            self.task.apply_async((n,), queue=queue)

    def heartbeat(self) -> None:
        buckets = [0] * (len(RUNTIME_BUCKETS) + 1)
        buckets[bisect_left(RUNTIME_BUCKETS, 0.2)] = self.finished
        children = [
            ChildStats(
                i,
                7100 + i,
                1.0,
                tasks=self.finished // 2,
                rss_kib=52_000 + 900 * i,
                uss_kib=21_000,
                peak_rss_kib=60_000,
                prefetch=2,
                running="dash.report" if i == 0 else None,
            )
            for i in range(2)
        ]
        runs = [TaskRuns("celery", "dash.report", self.finished, 0, 0, 0, self.finished * 0.2, buckets)]
        # each child's count of the default queue, true as of now (the worker's counting time)
        halves = (self.finished - self.finished // 2, self.finished // 2)
        counted = [SlotCounts(i, self.clock.now, {"celery": halves[i]}) for i in range(2)]
        stats = WorkerStats(
            "sim@dashboard",
            7000,
            1.0,
            0.0,
            ["celery"],
            2,
            "2",
            34_000 + self.finished * 10,
            children=children,
            runs=runs,
            counted=counted,
        )
        self.app.broker.put_node_stats(stats.node, stats.to_json(), 3600)

    def step(self, arrive_celery: int = 3, serve_celery: int = 3, beat: bool = True) -> None:
        """One sample a second after the previous one (with a heartbeat before it, if ``beat``)."""
        self.clock.now += 1.0
        self.publish(arrive_celery, "celery")
        got = self.app.broker.fetch(["celery"], serve_celery, 0, "simulated")
        self.app.broker.ack(got)
        self.finished += len(got)
        if beat:
            self.heartbeat()
        self.monitor.sample()

    def close(self) -> None:
        self.monitor.close()
        self.app.close()


@pytest.fixture
def scene(tmp_path: Path) -> Iterator[Scene]:
    scene = Scene(tmp_path)
    yield scene
    scene.close()


@pytest.fixture
def server(scene: Scene) -> Iterator[WebServer]:
    web = WebServer(scene.monitor, "127.0.0.1:0", None)
    web.start()
    yield web
    web.stop()


def test_the_dashboard_shows_the_alert_queue_and_charts_and_follows_new_samples(scene, server):
    executable = chromium_or_skip()
    from playwright.sync_api import expect, sync_playwright

    scene.publish(20)  # before the first sample, which lists the broker's queues
    scene.heartbeat()
    scene.monitor.sample()
    for _ in range(8):
        scene.step()
    assert next(q for q in scene.monitor.current().queues if q.name == QUEUE).length == 20

    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
            page.on("console", lambda msg: msg.type == "error" and errors.append(f"console: {msg.text}"))
            requested: list[str] = []
            page.on("request", lambda request: requested.append(request.url))
            page.goto(server.url)

            alerts = page.locator("#alerts")
            expect(alerts).to_contain_text(f"queue '{QUEUE}': messages waiting 20", timeout=15_000)
            expect(alerts.locator(".alert-warning")).to_have_count(1)
            row = page.locator(f"#queues tr[data-queue='{QUEUE}']")
            expect(row.locator("td.length")).to_have_text("20")
            expect(row).to_contain_text("warning")
            expect(page.locator("#chart-length canvas")).to_have_count(1)
            expect(page.locator("#chart-length .u-legend")).to_contain_text(QUEUE)
            page.wait_for_function(
                f"args => ({_PIXELS_OF_SERIES})(args) >= {DRAWN_PIXELS}",
                arg=["#chart-length", QUEUE],
                timeout=15_000,
            )
            # the simulated worker's queue: rates, run times and memory are drawn too
            page.locator("#queues tr[data-queue='celery']").click()
            expect(page.locator("#chart-rates .u-legend")).to_contain_text("service")
            for chart, series in (
                ("#chart-rates", "service"),
                ("#chart-runtime", "p95"),
                ("#chart-memory", "sim@dashboard children"),
            ):
                page.wait_for_function(
                    f"args => ({_PIXELS_OF_SERIES})(args) >= {DRAWN_PIXELS}",
                    arg=[chart, series],
                    timeout=15_000,
                )
            expect(page.locator("#workers")).to_contain_text("child #1")
            expect(page.locator("#status")).to_have_text("live")
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

            # new samples arrive: the table and the banner follow without a reload
            scene.publish(40)
            scene.step()
            expect(row.locator("td.length")).to_have_text("60", timeout=15_000)
            expect(alerts.locator(".alert-critical")).to_contain_text(f"queue '{QUEUE}'")
            expect(row).to_contain_text("critical")
            assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
            page.screenshot(path=str(ARTIFACTS / "dashboard-live.png"), full_page=True)
            assert errors == []
            # every asset is served by the monitor itself
            assert requested and all(url.startswith(server.url) for url in requested), requested

            # the monitor goes away: the page says so
            server.stop()
            expect(page.locator("#status")).to_have_text("disconnected", timeout=15_000)
        finally:
            browser.close()


def test_a_token_in_the_address_becomes_a_cookie_the_page_keeps_using(scene):
    executable = chromium_or_skip()
    from playwright.sync_api import expect, sync_playwright

    scene.publish(3)
    scene.monitor.sample()
    web = WebServer(scene.monitor, "127.0.0.1:0", "let-me-in")
    web.start()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=executable, args=CHROMIUM_ARGS, headless=True
            )
            try:
                page = browser.new_page()
                denied = page.goto(web.url)
                assert denied is not None and denied.status == 401
                page.goto(web.url + "?token=let-me-in")
                expect(page.locator(f"#queues tr[data-queue='{QUEUE}'] td.length")).to_have_text("3")
                expect(page.locator("#status")).to_have_text("live")
                assert "token" not in page.url  # the page drops it from the address bar
                # the page's own requests pass on the cookie alone: it keeps polling
                scene.publish(2)
                scene.clock.now += 1.0
                scene.monitor.sample()
                expect(page.locator(f"#queues tr[data-queue='{QUEUE}'] td.length")).to_have_text("5")
            finally:
                browser.close()
    finally:
        web.stop()


def test_the_service_line_never_touches_zero_while_the_worker_serves_steadily(scene, server):
    """The monitor samples every second and the worker's heartbeat comes every two (its default):
    the samples between heartbeats keep the steady rate, so the drawn service line stays off zero
    (counted on the sample's time it would zigzag between twice the rate and zero)."""
    executable = chromium_or_skip()
    from playwright.sync_api import expect, sync_playwright

    scene.heartbeat()
    scene.monitor.sample()
    for i in range(24):
        scene.step(arrive_celery=4, serve_celery=3, beat=i % 2 == 1)
    points = scene.monitor.history.points(scene.clock.now - 60, scene.clock.now, "celery")
    served = [p.service_rate for p in points if p.service_rate is not None]
    assert len(served) >= 20 and all(rate == pytest.approx(3.0) for rate in served), served

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.goto(server.url)
            page.locator("#queues tr[data-queue='celery']").click()
            expect(page.locator("#chart-rates .u-legend")).to_contain_text("service")
            page.wait_for_function(
                f"args => ({_PIXELS_OF_SERIES})(args) >= {DRAWN_PIXELS}",
                arg=["#chart-rates", "service"],
                timeout=15_000,
            )
            ARTIFACTS.mkdir(exist_ok=True)
            page.locator("#chart-rates").screenshot(path=str(ARTIFACTS / "dashboard-rates.png"))
            assert page.evaluate(_PIXELS_AT_ZERO, ["#chart-rates", "service", 3]) == 0
        finally:
            browser.close()
