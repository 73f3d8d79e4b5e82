"""Alerts: each fires once, repeats at a bounded rate while it holds, and clears when it stops
(once the condition has been gone ``clear_after_s``, so a value hovering at a limit does not flap).

The monitor hands :class:`AlertBook` the conditions that hold at every sample;
the book turns changes into events (``firing``, ``repeat``, ``cleared``) and
sends them to the log, and optionally to a webhook (JSON POST) and a command
(JSON on stdin). Sending happens on one background thread, so a slow webhook
never delays sampling; a failed delivery is logged and not retried.
"""

from __future__ import annotations

import logging
import os
import queue
import shlex
import subprocess
import threading
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

logger = logging.getLogger("celeriac.monitor")

WEBHOOK_TIMEOUT_S = 5.0
COMMAND_TIMEOUT_S = 30.0
#: events waiting to be sent; beyond this the oldest are dropped (and that is logged)
OUTBOX_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class Condition:
    """Something wrong right now. ``key`` identifies it across samples (kind and queue)."""

    key: str
    kind: str
    level: str  # "warning" or "critical"
    queue: str | None
    message: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Alert:
    """An active alert."""

    condition: Condition
    since: float
    last_sent: float
    #: when the condition was last seen to hold
    seen: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self.condition), "since": self.since}


Sink = Callable[[dict[str, Any]], None]


def webhook_sink(url: str) -> Sink:
    """POST each event as JSON to ``url``."""

    import urllib.request  # here: it takes longer to import than the rest of the monitor

    def send(event: dict[str, Any]) -> None:
        request = urllib.request.Request(
            url,
            data=orjson.dumps(event),
            headers={"Content-Type": "application/json", "User-Agent": "celeriac-monitor"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_S) as response:
            response.read()

    return send


def command_sink(command: str) -> Sink:
    """Run ``command`` (split like a shell would, run without one) with the event on stdin."""
    argv = shlex.split(command)

    def send(event: dict[str, Any]) -> None:
        env = {
            **os.environ,
            "CELERIAC_ALERT_STATE": event["state"],
            "CELERIAC_ALERT_KIND": event["kind"],
            "CELERIAC_ALERT_LEVEL": event["level"],
            "CELERIAC_ALERT_QUEUE": event["queue"] or "",
            "CELERIAC_ALERT_MESSAGE": event["message"],
        }
        done = subprocess.run(
            argv,
            input=orjson.dumps(event),
            env=env,
            capture_output=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"exited with {done.returncode}: {done.stderr.decode(errors='replace').strip()[:200]}"
            )

    return send


class Outbox:
    """Delivers events to the sinks on a background thread."""

    def __init__(self, sinks: dict[str, Sink]) -> None:
        self.sinks = sinks
        self.sent = 0
        self.failed = 0
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        if sinks:
            self._thread = threading.Thread(target=self._run, name="celeriac-alerts", daemon=True)
            self._thread.start()

    def put(self, event: dict[str, Any]) -> None:
        if self._thread is None:
            return
        if self._queue.qsize() >= OUTBOX_LIMIT:
            dropped = self._queue.get_nowait()
            if dropped is not None:
                logger.error("alert outbox full: dropped %s %s", dropped["state"], dropped["key"])
        self._queue.put(event)

    def _run(self) -> None:
        while True:
            event = self._queue.get()
            if event is None:
                return
            for name, sink in self.sinks.items():
                try:
                    sink(event)
                    self.sent += 1
                except Exception as exc:  # a sink must never stop the monitor
                    self.failed += 1
                    logger.error("could not send alert %s to the %s: %s", event["key"], name, exc)

    def close(self, timeout: float = 10.0) -> None:
        """Send what is queued (waiting at most ``timeout``), then stop the thread."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)


class AlertBook:
    """Active alerts, and what changed at each sample."""

    def __init__(
        self,
        repeat_s: float,
        outbox: Outbox | None = None,
        clear_after_s: float = 0.0,
        on_fire: Callable[[Alert], None] | None = None,
        on_clear: Callable[[Alert, float], None] | None = None,
    ) -> None:
        self.repeat_s = repeat_s
        self.clear_after_s = clear_after_s
        self.outbox = outbox
        self.active: dict[str, Alert] = {}
        self._on_fire = on_fire
        self._on_clear = on_clear

    def update(self, conditions: Iterable[Condition], now: float) -> list[dict[str, Any]]:
        """Compare with the conditions holding now; return the events sent."""
        events: list[dict[str, Any]] = []
        seen = set()
        for condition in conditions:
            seen.add(condition.key)
            alert = self.active.get(condition.key)
            if alert is None or alert.condition.level != condition.level:
                alert = self.active[condition.key] = Alert(condition, now, now, now)
                events.append(self._event("firing", alert, now))
                if self._on_fire is not None:
                    self._on_fire(alert)
            else:
                alert.condition = condition  # the figures move on; the alert stays the same
                alert.seen = now
                if now - alert.last_sent >= self.repeat_s:
                    alert.last_sent = now
                    events.append(self._event("repeat", alert, now))
        gone = [k for k, a in self.active.items() if k not in seen and now - a.seen >= self.clear_after_s]
        for key in gone:
            alert = self.active.pop(key)
            events.append(self._event("cleared", alert, now))
            if self._on_clear is not None:
                self._on_clear(alert, now)
        for event in events:
            self._log(event)
            if self.outbox is not None:
                self.outbox.put(event)
        return events

    @staticmethod
    def _event(state: str, alert: Alert, now: float) -> dict[str, Any]:
        return {"state": state, "at": now, **alert.as_dict()}

    @staticmethod
    def _log(event: dict[str, Any]) -> None:
        if event["state"] == "cleared":
            logger.info("alert cleared after %.0f s: %s", event["at"] - event["since"], event["message"])
            return
        level = logging.ERROR if event["level"] == "critical" else logging.WARNING
        again = " (still)" if event["state"] == "repeat" else ""
        logger.log(level, "ALERT %s%s: %s", event["level"].upper(), again, event["message"])
