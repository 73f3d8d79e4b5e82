"""The monitor's per-sample rates against real workers: right at any sampling interval.

A steady producer sends faster than two children serve, the workers publish their heartbeat
at the default interval (2 s), and four monitors sample the same broker at 0.5, 1, 2 and
5 s. Every rate each of them stores after the warm-up must be within 15 % of the rate the
test counted itself: sends from the producer's own log, runs from the tasks' run log.
Sampling faster than the heartbeat must not read zero between heartbeats, and sampling
slower must not alias.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
import redis

from celeriac.observe.history import History
from celeriac.observe.monitor import Monitor
from tests.process.harness import HERE

pytestmark = pytest.mark.process

INTERVALS = (0.5, 1.0, 2.0, 5.0)
#: two children of about 60 runs/s each; the producer sends more, so the queue grows
TASK_S = 0.015
SEND_PER_S = 200.0
#: the first samples wait for heartbeats and the first counted spans
WARM_UP_S = 10.0
RUN_S = 28.0
TOLERANCE = 0.15


@pytest.fixture(params=["sqlite", "redis"])
def broker(request, app, env):
    """The workers, the producer and the monitors on SQLite or on the shared Redis."""
    if request.param == "sqlite":
        yield request.param
        return
    url = request.getfixturevalue("redis_url")
    prefix = f"rates-{uuid.uuid4().hex[:8]}:"
    options = f'{{"global_keyprefix": "{prefix}"}}'
    env.update(CELERIAC_BROKER_URL=url, CELERIAC_BROKER_TRANSPORT_OPTIONS=options)
    saved = {k: app.conf[k] for k in ("broker_url", "broker_transport_options")}
    app.conf.update(broker_url=url, broker_transport_options={"global_keyprefix": prefix})
    yield request.param
    app.close()
    app.conf.update(saved)
    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


def per_second(times: list[float], since: float, until: float) -> float:
    return sum(since <= t < until for t in times) / (until - since)


def test_stored_rates_are_within_15_percent_at_every_interval(
    app, env, workers, runs, broker, tmp_path: Path
):
    workers("-c", "2", "--prefetch-multiplier", "1", "-n", "rates@%h", proc_stats_interval="2").wait_ready(2)
    monitors = [Monitor(app, History(":memory:"), interval=interval, sinks={}) for interval in INTERVALS]
    stop = threading.Event()
    samplers = [threading.Thread(target=m.run, args=(stop,), daemon=True) for m in monitors]
    sends = tmp_path / "sends.log"
    command = [
        sys.executable,
        str(HERE / "steady_producer.py"),
        str(SEND_PER_S),
        str(RUN_S),
        str(TASK_S),
        str(sends),
    ]
    producer = subprocess.Popen(command, env=env, start_new_session=True)
    try:
        for sampler in samplers:
            sampler.start()
        assert producer.wait(RUN_S + 30) == 0
    finally:
        stop.set()
        if producer.poll() is None:
            producer.kill()
            producer.wait()
        for sampler in samplers:
            sampler.join(20)
    sent = [float(line) for line in sends.read_text().split()]
    ran = [at for label, _pid, at in runs.entries() if label.startswith("s")]
    since, until = sent[0] + WARM_UP_S, sent[-1]
    arrival, service = per_second(sent, since, until), per_second(ran, since, until)
    assert service < arrival * 0.9  # the queue grows: the two rates differ
    samples, failures = [], []
    for monitor in monitors:
        points = monitor.history.points(since, until, "celery")
        monitor.close()
        assert len(points) >= (until - since) / monitor.interval * 0.8, monitor.interval
        for point in points:
            line = (
                f"every {monitor.interval:>3} s, t+{point.t - sent[0]:4.1f} s: "
                f"arrival {_fmt(point.arrival_rate)} (true {arrival:.1f}), "
                f"service {_fmt(point.service_rate)} (true {service:.1f})"
            )
            samples.append(line)
            if not (_near(point.arrival_rate, arrival) and _near(point.service_rate, service)):
                failures.append(line)
    assert not failures, "\n".join(["off by more than 15 %:", *failures, "every sample:", *samples])


def _near(measured: float | None, true: float) -> bool:
    return measured is not None and abs(measured - true) <= TOLERANCE * true


def _fmt(rate: float | None) -> str:
    return "none" if rate is None else f"{rate:.1f}"
