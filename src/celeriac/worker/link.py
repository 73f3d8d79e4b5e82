"""The master's broker connection: lost, retried with backoff, restored, or given up.

While the broker is unreachable the children keep running their tasks and
retry on their own; the master stops its periodic broker work (lease renewal,
heartbeats) and tries again after a growing pause, logging one line per
attempt. ``broker_connection_max_retries`` failed attempts in a row (or the
first one, with ``broker_connection_retry=False``) make the worker stop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from celeriac.errors import BrokerError

logger = logging.getLogger("celeriac.worker")

FIRST_PAUSE_S = 1.0
LONGEST_PAUSE_S = 30.0


class BrokerLink:
    """Counts consecutive broker failures and says when to try again or give up."""

    def __init__(
        self,
        location: str,
        retry: bool,
        max_retries: int | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.location = location
        self.retry = retry
        self.max_retries = max_retries
        self.clock = clock
        self.attempts = 0
        self.down_since: float | None = None
        self.next_attempt = 0.0

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def due(self, now: float | None = None) -> bool:
        """True when the broker may be used: it is up, or the next attempt is due."""
        return not self.down or (self.clock() if now is None else now) >= self.next_attempt

    def pause(self) -> float:
        """Seconds before the next attempt."""
        return min(FIRST_PAUSE_S * 2 ** max(self.attempts - 1, 0), LONGEST_PAUSE_S)

    def failed(self, what: str, exc: BrokerError) -> None:
        """Record a failed attempt and log it with the time until the next one."""
        now = self.clock()
        if self.down_since is None:
            self.down_since = now
        self.attempts += 1
        self.next_attempt = now + self.pause()
        limit = "" if self.max_retries is None else f" of {self.max_retries}"
        logger.error(
            "broker unreachable while %s (attempt %d%s, down for %.0f s): %s; "
            "running tasks go on, next attempt in %.0f s",
            what,
            self.attempts,
            limit,
            now - self.down_since,
            exc,
            self.pause(),
        )

    def ok(self) -> None:
        """The broker answered: log the recovery once."""
        if self.down_since is not None:
            logger.warning(
                "broker at %s is back after %.1f s (%d failed attempts)",
                self.location,
                self.clock() - self.down_since,
                self.attempts,
            )
        self.down_since = None
        self.attempts = 0
        self.next_attempt = 0.0

    def give_up_reason(self, starting: bool = False) -> str | None:
        """Why the worker should stop trying, or None. At start, broker_connection_retry_on_startup
        (checked by the caller) replaces broker_connection_retry."""
        if not self.down:
            return None
        if not self.retry and not starting:
            return "the broker connection was lost and broker_connection_retry is False"
        if self.max_retries is not None and self.attempts > self.max_retries:
            return (
                f"the broker stayed unreachable for {self.attempts} attempts "
                f"(broker_connection_max_retries={self.max_retries}); raise it or None to retry forever"
            )
        return None
