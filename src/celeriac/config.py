"""The settings table: one row per setting, Celery's names and units.

Every setting is declared once in :data:`SETTINGS` with its default, type, unit
and documentation; ``docs/settings.md`` is generated from it (``make docs``). Values are validated when they are set: a bad
value or an unknown name raises :class:`~celeriac.errors.ConfigurationError`
naming the setting, the closest valid name and the expected type and unit.

Celery settings that celeriac does not implement are accepted with a warning
that says so (see :data:`CELERY_IGNORED`), so a Celery configuration module
loads unchanged.

Environment: ``CELERIAC_<NAME>`` (for example ``CELERIAC_BROKER_URL``)
overrides the values given to the app's constructor and ``config_from_object``;
``CELERY_BROKER_URL`` and ``CELERY_RESULT_BACKEND`` are honoured too. Values set
in code afterwards (``app.conf.x = ...``) win. Values from the environment are
parsed for the setting's type (JSON for lists and mappings).
"""

from __future__ import annotations

import difflib
import importlib
import logging
import os
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import orjson

from celeriac.brokers.base import DEFAULT_PUBLISH_RETRY_POLICY
from celeriac.errors import ConfigurationError
from celeriac.protocol import serializers
from celeriac.protocol.entities import Queue, delivery_mode_of

logger = logging.getLogger("celeriac.config")

Validator = Callable[[str, Any], Any]


@dataclass(frozen=True, slots=True)
class Setting:
    """One row of the settings table."""

    name: str
    default: Any
    type: str
    unit: str
    doc: str
    validate: Validator
    celery: str = "same"  # "same" as Celery, "celeriac" (own setting) or a note on the difference


def _fail(name: str, value: Any, expected: str) -> ConfigurationError:
    return ConfigurationError(f"{name}={value!r} is invalid: expected {expected}")


# -- validators ----------------------------------------------------------------------------------


def _url(name: str, value: Any) -> str:
    if not isinstance(value, str) or "://" not in value:
        raise _fail(name, value, "a URL such as 'sqlite:///celeriac.db'")
    return value


def _optional_url(name: str, value: Any) -> str | None:
    return None if value is None else _url(name, value)


def _bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise _fail(name, value, "True or False")


def _str(name: str, value: Any) -> str:
    if isinstance(value, str) and value:
        return value
    raise _fail(name, value, "a non-empty string")


def _int_at_least(minimum: int, unit: str, optional: bool = False) -> Validator:
    def check(name: str, value: Any) -> int | None:
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            none = " or None" if optional else ""
            raise _fail(name, value, f"an integer >= {minimum}{none} ({unit})")
        return value

    return check


def _seconds(optional: bool = False, positive: bool = True) -> Validator:
    def check(name: str, value: Any) -> float | None:
        if value is None and optional:
            return None
        if isinstance(value, timedelta):
            value = value.total_seconds()
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or value < 0
            or (positive and value == 0)
        ):
            none = " or None" if optional else ""
            sign = "> 0" if positive else ">= 0"
            raise _fail(name, value, f"a number of seconds {sign} (int, float or timedelta){none}")
        return float(value)

    return check


def _str_list(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list | tuple | set | frozenset) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise _fail(name, value, "a list of strings")


def _mapping(name: str, value: Any) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return dict(value)
    raise _fail(name, value, "a dict")


#: What ``monitor_thresholds`` may watch per queue, and the unit of each.
THRESHOLD_KINDS = {"length": "messages", "oldest_age": "seconds", "wait": "seconds"}


def _thresholds(name: str, value: Any) -> dict[str, dict[str, tuple[float, float | None]]]:
    """``{queue or "*": {kind: warning or [warning, critical]}}`` to ``{queue: {kind: (w, c)}}``."""
    example = "{'*': {'length': [1000, 10000], 'oldest_age': 300}, 'emails': {'wait': [60, 600]}}"
    if not isinstance(value, Mapping):
        raise _fail(name, value, f"a dict of queue name (or '*') to limits, such as {example}")
    out: dict[str, dict[str, tuple[float, float | None]]] = {}
    for queue, limits in value.items():
        if not isinstance(queue, str) or not isinstance(limits, Mapping):
            raise _fail(name, value, f"queue names (or '*') mapping to dicts of limits, such as {example}")
        out[queue] = {}
        for kind, limit in limits.items():
            if kind not in THRESHOLD_KINDS:
                raise ConfigurationError(
                    f"setting {name}[{queue!r}] has unknown limit {kind!r}{did_you_mean(kind, THRESHOLD_KINDS)}: "
                    f"use {', '.join(THRESHOLD_KINDS)}"
                )
            pair = list(limit) if isinstance(limit, list | tuple) else [limit, None]
            numbers = [v for v in pair if v is not None]
            if (
                len(pair) != 2
                or pair[0] is None
                or any(isinstance(v, bool) or not isinstance(v, int | float) or v < 0 for v in numbers)
                or (pair[1] is not None and pair[1] < pair[0])
            ):
                raise _fail(
                    f"{name}[{queue!r}][{kind!r}]",
                    limit,
                    f"a warning level or [warning, critical] in {THRESHOLD_KINDS[kind]}, numbers >= 0, "
                    "critical not below warning",
                )
            out[queue][kind] = (float(pair[0]), None if pair[1] is None else float(pair[1]))
    return out


def _bind(name: str, value: Any) -> str:
    host, _, port = value.rpartition(":") if isinstance(value, str) else ("", "", "")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise _fail(name, value, "HOST:PORT, such as '127.0.0.1:5555' (port 0: any free port)")
    return value


def _optional_str(name: str, value: Any) -> str | None:
    return None if value is None else _str(name, value)


_POLICY_KEYS = ("max_retries", "interval_start", "interval_step", "interval_max")


def _retry_policy(name: str, value: Any) -> dict[str, float]:
    expected = f"a dict with {', '.join(_POLICY_KEYS)} (numbers >= 0)"
    if not isinstance(value, Mapping):
        raise _fail(name, value, expected)
    policy = dict(DEFAULT_PUBLISH_RETRY_POLICY)
    for key, item in value.items():
        if key not in _POLICY_KEYS:
            raise _fail(name, value, expected + f"; unknown key {key!r}{did_you_mean(key, _POLICY_KEYS)}")
        if isinstance(item, bool) or not isinstance(item, int | float) or item < 0:
            raise _fail(name, value, expected + f"; {key}={item!r}")
        policy[key] = item
    return policy


def _serializer(name: str, value: Any) -> str:
    try:
        serializers.content_type_of(value)
    except Exception:
        raise _fail(name, value, f"a serializer name: {', '.join(sorted(serializers.ALIASES))}") from None
    return value


def _accept(name: str, value: Any) -> tuple[str, ...]:
    names = _str_list(name, value)
    for item in names:
        _serializer(name, item)
    return names


def _optional_accept(name: str, value: Any) -> tuple[str, ...] | None:
    return None if value is None else _accept(name, value)


def _queues(name: str, value: Any) -> tuple[Queue, ...] | None:
    if value is None:
        return None
    if isinstance(value, Queue):
        value = (value,)
    if not isinstance(value, list | tuple | set | frozenset) or not all(isinstance(q, Queue) for q in value):
        raise _fail(name, value, "a list or tuple of Queue objects")
    names = [q.name for q in value]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigurationError(f"setting {name} declares queue(s) {duplicates} more than once")
    return tuple(value)


def _route_entry(name: str, entry: Any) -> Any:
    if isinstance(entry, str):
        module, _, attr = entry.rpartition(".")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError, ValueError) as exc:
            raise ConfigurationError(f"setting {name}: cannot import router {entry!r}: {exc}") from exc
    if isinstance(entry, Mapping) or callable(entry):
        return entry
    if isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[0], str):
        return entry
    raise _fail(name, entry, "a dict, a callable, a (pattern, route) pair or an import path")


def _routes(name: str, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, Mapping) or callable(value) or isinstance(value, str):
        value = (value,)
    if not isinstance(value, list | tuple):
        raise _fail(name, value, "a dict, a list of routers, or a callable")
    return tuple(_route_entry(name, entry) for entry in value)


def _prefetch(name: str, value: Any) -> int | str:
    if value == "auto":
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _fail(name, value, "an integer >= 0 (messages per child; 0 = unlimited) or 'auto'")
    return value


def _delivery_mode(name: str, value: Any) -> int:
    mode = delivery_mode_of(value, name)
    assert mode is not None
    return mode


def _optional_priority(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 255:
        raise _fail(name, value, "an integer from 0 to 255 or None")
    return value


def _protocol(name: str, value: Any) -> int:
    if value != 2:
        raise _fail(name, value, "2 (celeriac speaks Celery's task message protocol 2 only)")
    return 2


def _timezone(name: str, value: Any) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if not isinstance(value, str):
        raise _fail(name, value, "a time zone name such as 'UTC' or 'Europe/Paris'")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise _fail(name, value, "a time zone name such as 'UTC' or 'Europe/Paris'") from None
    return value


#: The table's validators, for values that are not settings (``apply_async``'s options).
seconds_validator = _seconds
int_validator = _int_at_least
priority_validator = _optional_priority


# -- the table -----------------------------------------------------------------------------------

_S = Setting

# fmt: off
SETTINGS: tuple[Setting, ...] = (
    # broker
    _S("broker_url", "sqlite:///celeriac.db", "URL", "", "Where messages are stored: `sqlite:///path.db` (embedded, the default), `redis://host:6379/0` (also `rediss://`, `unix://`, and `sentinel://host:26379/0;sentinel://host2:26379/0` for Redis Sentinel), `amqp://user:password@host:5672/vhost` (also `amqps://`, `pyamqp://`; RabbitMQ) or `memory://` (tests).", _url, "default differs: Celery defaults to amqp://"),
    _S("broker_transport_options", {}, "dict", "", "Broker-specific options. SQLite: `fsync` = `'publish'` (default: fsync each publish) or `'all'` (also fsync deliveries and acks); `busy_timeout` (seconds a write may wait for the lock, default 30). Redis: `global_keyprefix`, `socket_timeout`, `socket_connect_timeout`, `socket_keepalive`, `health_check_interval`; with a `sentinel://` URL `master_name` (required), `sentinel_kwargs` (the sentinels' own connection options, e.g. a password), `min_other_sentinels` (see docs/redis.md). RabbitMQ: `transient_queues` (`'auto'` or `'durable'`), `transient_message_ttl`, `confirm_timeout`, `heartbeat` (see docs/rabbitmq.md).", _mapping),
    _S("broker_lease_timeout", 30.0, "float", "seconds", "How long a fetched message stays invisible to other workers if its worker stops renewing the lease. Live workers renew every third of it, so tasks may run longer than this.", _seconds(), "celeriac"),
    _S("task_delivery_limit", 5, "int", "deliveries", "A message delivered this many times without being settled (its child kept dying on it, or its task requeued it with Reject(requeue=True)) goes to the dead letters instead of running again.", _int_at_least(1, "deliveries"), "celeriac"),
    _S("broker_pool_limit", 10, "int", "connections", "Most connections to a networked broker (Redis) a process keeps; callers beyond it wait for a free one. None: no limit.", _int_at_least(1, "connections", optional=True), "same; None means no limit (Celery: no pool)"),
    _S("broker_pool_timeout", 10.0, "float", "seconds", "How long a caller waits for a pooled broker connection before BrokerError says to raise `broker_pool_limit`.", _seconds(), "celeriac"),
    _S("broker_connection_timeout", 4.0, "float", "seconds", "How long connecting to a networked broker may take.", _seconds()),
    _S("broker_connection_retry", True, "bool", "", "A worker that loses its broker connection keeps running tasks and reconnects (False: it exits).", _bool),
    _S("broker_connection_retry_on_startup", True, "bool", "", "A worker started while its broker is down waits for it, logging each attempt (False: it exits with an error).", _bool),
    _S("broker_connection_max_retries", 100, "int", "attempts", "Reconnection attempts before a worker gives up (None: forever).", _int_at_least(0, "attempts", optional=True)),
    _S("task_publish_retry", True, "bool", "", "Retry sending a task when the broker connection is lost, per `task_publish_retry_policy`.", _bool),
    _S("task_publish_retry_policy", dict(DEFAULT_PUBLISH_RETRY_POLICY), "dict", "", "`max_retries`, `interval_start`, `interval_step`, `interval_max` (seconds) of send retries.", _retry_policy),
    # queues and routing
    _S("task_queues", None, "list of Queue", "", "Queues this app knows. None: one durable queue named `task_default_queue`.", _queues),
    _S("task_routes", None, "dict, list or callable", "", "Where each task goes: `{'name-or-glob': {'queue': ..., 'delivery_mode': ...}}`, a list of such dicts, `(pattern, route)` pairs or callables `(name, args, kwargs, options, task=None, **kw) -> dict | str | None`.", _routes),
    _S("task_default_queue", "celery", "str", "", "Queue of tasks with no route.", _str),
    _S("task_default_delivery_mode", 2, "int or str", "", "`'persistent'` (2) or `'transient'` (1) for messages whose queue, route and call say nothing.", _delivery_mode),
    _S("task_default_priority", None, "int", "", "Priority of messages sent without one (0-255, higher runs first on SQLite).", _optional_priority),
    _S("task_queue_max_priority", None, "int", "", "`x-max-priority` of every queue that sets no `max_priority` of its own (RabbitMQ: a queue supports priorities only with it). Must match what Celery declares for shared queues.", _optional_priority),
    _S("task_create_missing_queues", True, "bool", "", "Create a durable queue for a route that names a queue not in `task_queues`; if False such a route is an error.", _bool),
    # messages
    _S("task_serializer", "json", "str", "", "Content type of task arguments: `json` or `pickle` (pickle must also be in `accept_content`).", _serializer),
    _S("accept_content", ("json",), "list of str", "", "Content types a worker accepts; other messages go to the dead letters.", _accept),
    _S("task_protocol", 2, "int", "", "Task message protocol. Only 2 (Celery's default since 4.0).", _protocol),
    _S("task_message_max_bytes", 16 * 1024 * 1024, "int", "bytes", "Largest message body a producer sends and a worker accepts; larger ones are refused or dead-lettered.", _int_at_least(1, "bytes"), "celeriac"),
    _S("timezone", "UTC", "str", "", "Time zone in which naive `eta` datetimes are read.", _timezone),
    # execution
    _S("task_acks_late", False, "bool", "", "Ack after the task ran (at-least-once: a task whose child dies runs again) instead of before it starts (at-most-once).", _bool),
    _S("task_acks_on_failure_or_timeout", True, "bool", "", "With `task_acks_late`, ack tasks that failed or hit the hard time limit (False: dead-letter them).", _bool),
    _S("task_reject_on_worker_lost", True, "bool", "", "With `task_acks_late`, a task whose child died is delivered again. False: it is acked and recorded as failed (WorkerLostError).", _bool, "default differs: Celery defaults to False"),
    _S("task_time_limit", None, "float", "seconds", "Hard time limit: the child running the task is killed and replaced, the task fails with TimeLimitExceeded.", _seconds(optional=True)),
    _S("task_soft_time_limit", None, "float", "seconds", "Soft time limit: SoftTimeLimitExceeded is raised inside the task.", _seconds(optional=True)),
    _S("task_default_retry_delay", 180.0, "float", "seconds", "Delay before a retry when `Task.retry()` gives no countdown or eta.", _seconds(positive=False)),
    _S("task_max_retries", 3, "int", "retries", "Retries allowed before `Task.retry()` raises MaxRetriesExceededError (None: unlimited). Per task: `max_retries=`.", _int_at_least(0, "retries", optional=True), "Celery's Task.max_retries as a setting"),
    _S("task_track_started", False, "bool", "", "Record the STARTED state (with pid and hostname) when a task starts.", _bool),
    _S("task_ignore_result", False, "bool", "", "Do not store results (per task: `ignore_result=True`).", _bool),
    _S("task_always_eager", False, "bool", "", "Run tasks in the calling process at `apply_async` (for tests); no broker is used.", _bool),
    _S("task_eager_propagates", False, "bool", "", "In eager mode, re-raise the task's exception at `apply_async`.", _bool),
    # results
    _S("result_backend", None, "URL", "", "Where results are stored: `sqlite:///path.db` or `redis://host:6379/0` (Celery's key layout; also `rediss://`, `unix://`, `sentinel://host:26379/0;...`). None: the broker's file when the broker is SQLite, else no results.", _optional_url, "default differs: Celery stores no results unless set"),
    _S("result_backend_transport_options", {}, "dict", "", "Options of a Redis result backend (and of the store on its URL) behind Redis Sentinel: `master_name` (required with a `sentinel://` URL), `sentinel_kwargs`, `min_other_sentinels`, as for the broker (see docs/redis.md). Other backends take none.", _mapping),
    _S("result_serializer", "json", "str", "", "Content type of stored results.", _serializer),
    _S("result_accept_content", None, "list of str", "", "Content types accepted when reading results (None: `accept_content`).", _optional_accept),
    _S("result_expires", 86400.0, "float", "seconds", "Results older than this are deleted (None: kept).", _seconds(optional=True)),
    # worker
    _S("worker_concurrency", None, "int", "processes", "Number of child processes (None: number of CPUs).", _int_at_least(1, "processes", optional=True)),
    _S("worker_prefetch_multiplier", 4, "int or 'auto'", "messages per child", "How many messages each child fetches at a time: 1 = fair dispatch for long tasks, 0 = as many as are ready (up to 1000), 'auto' = sized from measured task time.", _prefetch),
    _S("worker_max_tasks_per_child", None, "int", "tasks", "Replace a child after it ran this many tasks.", _int_at_least(1, "tasks", optional=True)),
    _S("worker_max_memory_per_child", None, "int", "KiB", "Replace a child after a task if its own memory (USS: pages not shared with the master) is above this.", _int_at_least(1, "KiB", optional=True), "same name and unit; celeriac compares USS, Celery peak RSS"),
    _S("worker_max_memory_per_child_hard", None, "int", "KiB", "Kill a child at once, even in the middle of a task, if its own memory (USS) is above this; the task fails, or runs again with `task_acks_late`. Set it above `worker_max_memory_per_child`.", _int_at_least(1, "KiB", optional=True), "celeriac"),
    _S("worker_memory_interval", 1.0, "float", "seconds", "How often the master samples the memory (RSS, USS) of itself and of every child.", _seconds(), "celeriac"),
    _S("worker_proc_alive_timeout", 10.0, "float", "seconds", "How long a new child may take to start before it is killed and replaced.", _seconds(), "default differs: Celery uses 4.0"),
    _S("worker_stats_interval", 2.0, "float", "seconds", "How often the master publishes its heartbeat with per-child statistics.", _seconds(), "celeriac"),
    _S("worker_log_format", "[%(asctime)s: %(levelname)s/%(processName)s] %(message)s", "str", "", "Log line format of the worker.", _str),
    _S("monitor_interval", 5.0, "float", "seconds", "How often `celeriac monitor` samples every queue and reads the workers' heartbeats.", _seconds(), "celeriac"),
    _S("monitor_queues", (), "list of str", "", "Queues to watch besides those the broker lists and `task_queues`: the queues of a plain Celery deployment, for example.", _str_list, "celeriac"),
    _S("monitor_history_path", "celeriac-monitor.db", "str", "path", "The monitor's history (SQLite): every sample for 6 hours, one per minute for 7 days, one per hour for `monitor_history_days`.", _str, "celeriac"),
    _S("monitor_history_days", 30, "int", "days", "How long the monitor keeps its hourly history.", _int_at_least(1, "days"), "celeriac"),
    _S("monitor_thresholds", {}, "dict", "per queue", "Alert levels per queue (`'*'`: every queue): `length` (messages), `oldest_age` and `wait` (seconds), each a warning level or `[warning, critical]`. Munin's warning/critical come from here too.", _thresholds, "celeriac"),
    _S("monitor_overload_after", 60.0, "float", "seconds", "How long a queue must keep growing, with arrivals above service, before the overload alert fires; also the window rates are measured over.", _seconds(), "celeriac"),
    _S("monitor_alert_repeat", 900.0, "float", "seconds", "An alert still active is sent again at most this often.", _seconds(), "celeriac"),
    _S("monitor_webhook_url", None, "str", "URL", "Alerts are POSTed here as JSON (fired, repeated, cleared).", _optional_url, "celeriac"),
    _S("monitor_alert_command", None, "str", "command", "Alerts are piped as JSON to this command's stdin (run without a shell; CELERIAC_ALERT_* variables set).", _optional_str, "celeriac"),
    _S("monitor_web_bind", "127.0.0.1:5555", "str", "HOST:PORT", "Where `celeriac monitor --web` serves the dashboard and /metrics. Any address but loopback needs `monitor_web_token`.", _bind, "celeriac"),
    _S("monitor_web_token", None, "str", "", "Token the dashboard and /metrics require (`Authorization: Bearer <token>` or `?token=`); required to bind beyond loopback.", _optional_str, "celeriac"),
    _S("include", (), "list of str", "", "Modules the worker imports at start (where tasks are defined).", _str_list),
    _S("imports", (), "list of str", "", "Same as `include`.", _str_list),
)
# fmt: on

SETTINGS_BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}

#: Celery settings accepted (with a warning) and ignored: why each does not apply.
CELERY_IGNORED: dict[str, str] = {
    "enable_utc": "celeriac always keeps times in UTC",
    "worker_hijack_root_logger": "celeriac configures only its own loggers and the root handler the CLI sets up",
    "worker_redirect_stdouts": "output of task code goes to the worker's stderr",
    "worker_redirect_stdouts_level": "output of task code goes to the worker's stderr",
    "worker_send_task_events": "task events are not implemented; the worker heartbeat carries statistics",
    "task_send_sent_event": "task events are not implemented",
    "result_extended": "results always store the task name, args and worker",
    "broker_heartbeat": "connections use TCP keepalive; for AMQP heartbeats on RabbitMQ set broker_transport_options={'heartbeat': seconds}, on Redis health_check_interval",
    "worker_disable_rate_limits": "rate limits are not implemented",
    "task_annotations": "annotations are not implemented",
    "beat_schedule": "periodic tasks (beat) are not implemented",
    "result_persistent": "results are always persistent",
    "worker_pool_restarts": "children can be recycled by task count and memory instead",
    "worker_task_log_format": "worker_log_format applies to task logs too",
}

#: Celery settings refused (an error), each with what to do instead: ignoring them would
#: leave a deployment other than its configuration says (no TLS, another exchange).
CELERY_REFUSED: dict[str, str] = {
    "broker_use_ssl": "put the TLS options in broker_url: amqps://user:password@host:5671/vhost"
    "?ssl_ca_certs=/path/ca.pem&ssl_cert_reqs=CERT_REQUIRED (rediss://...?ssl_cert_reqs=required for Redis; "
    "TLS to Redis Sentinel is not supported)",
    "task_default_exchange": "declare the queue with its exchange in task_queues: "
    "[Queue('celery', Exchange('name', type='direct'), routing_key='celery')]",
    "task_default_exchange_type": "declare the queue with its exchange in task_queues: "
    "[Queue('celery', Exchange('celery', type='topic'), routing_key='celery')]",
    "task_default_routing_key": "declare the queue with its routing key in task_queues: "
    "[Queue('celery', routing_key='key')]",
}

_ENV_ALIASES = {"CELERY_BROKER_URL": "broker_url", "CELERY_RESULT_BACKEND": "result_backend"}


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` naming the closest of ``choices``, or an empty string."""
    close = difflib.get_close_matches(name, sorted(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def suggest(name: str) -> str:
    """A hint naming the closest valid setting, or an empty string."""
    return did_you_mean(name, SETTINGS_BY_NAME)


def _unknown(name: str) -> ConfigurationError:
    if name in CELERY_REFUSED:
        return ConfigurationError(f"Celery setting {name!r} is not supported: {CELERY_REFUSED[name]}")
    return ConfigurationError(
        f"unknown setting {name!r}{suggest(name)} (every setting is listed in docs/settings.md)"
    )


def validate(name: str, value: Any) -> Any:
    """``value`` as setting ``name`` stores it, checked by the setting's own validator.

    The check ``app.conf[name] = value`` makes, without storing anything: for callers that
    take a setting's value from elsewhere (a worker's command line). Raises
    :class:`~celeriac.errors.ConfigurationError` naming the setting and what it expects, or
    the closest valid name for an unknown one.
    """
    setting = SETTINGS_BY_NAME.get(name)
    if setting is None:
        raise _unknown(name)
    return setting.validate(name, value)


def parse_env_value(setting: Setting, raw: str) -> Any:
    """Turn an environment string into a value of the setting's type."""
    text = raw.strip()
    if setting.validate is _bool or setting.type == "bool":
        lowered = text.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigurationError(f"environment value for {setting.name}={raw!r}: expected true or false")
    if text.lower() in ("none", "null"):
        return None
    if setting.type in ("URL", "str") or (setting.name == "worker_prefetch_multiplier" and text == "auto"):
        return text
    if setting.type.startswith("list") and not text.startswith("["):
        return text
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


class Settings:
    """The settings of one app. Attribute and item access for every setting in the table."""

    __slots__ = ("_listener", "_values")

    _values: dict[str, Any]
    _listener: Callable[[frozenset[str]], None] | None

    # One annotation per row of SETTINGS, for type checkers and editors; the
    # properties themselves are made from the table below the class (a unit test
    # keeps the two lists identical).
    broker_url: str
    broker_transport_options: dict[str, Any]
    broker_lease_timeout: float
    task_delivery_limit: int
    broker_pool_limit: int | None
    broker_pool_timeout: float
    broker_connection_timeout: float
    broker_connection_retry: bool
    broker_connection_retry_on_startup: bool
    broker_connection_max_retries: int | None
    task_publish_retry: bool
    task_publish_retry_policy: dict[str, float]
    task_queues: tuple[Queue, ...] | None
    task_routes: tuple[Any, ...] | None
    task_default_queue: str
    task_default_delivery_mode: int
    task_default_priority: int | None
    task_queue_max_priority: int | None
    task_create_missing_queues: bool
    task_serializer: str
    accept_content: tuple[str, ...]
    task_protocol: int
    task_message_max_bytes: int
    timezone: str
    task_acks_late: bool
    task_acks_on_failure_or_timeout: bool
    task_reject_on_worker_lost: bool
    task_time_limit: float | None
    task_soft_time_limit: float | None
    task_default_retry_delay: float
    task_max_retries: int | None
    task_track_started: bool
    task_ignore_result: bool
    task_always_eager: bool
    task_eager_propagates: bool
    result_backend: str | None
    result_backend_transport_options: dict[str, Any]
    result_serializer: str
    result_accept_content: tuple[str, ...] | None
    result_expires: float | None
    worker_concurrency: int | None
    worker_prefetch_multiplier: int | str
    worker_max_tasks_per_child: int | None
    worker_max_memory_per_child: int | None
    worker_max_memory_per_child_hard: int | None
    worker_memory_interval: float
    worker_proc_alive_timeout: float
    worker_stats_interval: float
    worker_log_format: str
    monitor_interval: float
    monitor_queues: tuple[str, ...]
    monitor_history_path: str
    monitor_history_days: int
    monitor_thresholds: dict[str, dict[str, tuple[float, float | None]]]
    monitor_overload_after: float
    monitor_alert_repeat: float
    monitor_webhook_url: str | None
    monitor_alert_command: str | None
    monitor_web_bind: str
    monitor_web_token: str | None
    include: tuple[str, ...]
    imports: tuple[str, ...]

    def __init__(
        self,
        values: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
        listener: Callable[[frozenset[str]], None] | None = None,
    ) -> None:
        object.__setattr__(self, "_values", {s.name: s.default for s in SETTINGS})
        object.__setattr__(self, "_listener", listener)
        if values:
            self.update(values)
        self.apply_environment(environ)

    def apply_environment(self, environ: Mapping[str, str] | None = None) -> None:
        """Apply ``CELERIAC_<NAME>`` (and ``CELERY_BROKER_URL``, ``CELERY_RESULT_BACKEND``)
        from ``environ`` (default: the process environment) over the current values."""
        environ = os.environ if environ is None else environ
        for env_name, name in _ENV_ALIASES.items():
            if env_name in environ:
                self[name] = parse_env_value(SETTINGS_BY_NAME[name], environ[env_name])
        for env_name, raw in environ.items():
            if env_name.startswith("CELERIAC_") and env_name != "CELERIAC_APP":
                name = env_name[len("CELERIAC_") :].lower()
                setting = SETTINGS_BY_NAME.get(name)
                if setting is None:
                    raise ConfigurationError(f"environment variable {env_name}: {_unknown(name)}")
                self[name] = parse_env_value(setting, raw)

    # -- access -----------------------------------------------------------------------------

    def __getitem__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise _unknown(name) from None

    def __setitem__(self, name: str, value: Any) -> None:
        setting = SETTINGS_BY_NAME.get(name)
        if setting is None:
            if name in CELERY_IGNORED:
                logger.warning("setting %s is ignored: %s", name, CELERY_IGNORED[name])
                return
            raise _unknown(name)
        self._values[name] = setting.validate(name, value)
        if self._listener is not None:
            self._listener(frozenset((name,)))

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def get(self, name: str, default: Any = None) -> Any:
        """The value of ``name``, or ``default`` for names that are not settings."""
        return self._values.get(name, default)

    def update(self, values: Mapping[str, Any] | Iterable[tuple[str, Any]] = (), **kwargs: Any) -> None:
        """Set several settings; the first bad one raises before any is applied."""
        items = dict(values, **kwargs)
        staged = Settings.__new__(Settings)
        object.__setattr__(staged, "_values", dict(self._values))
        object.__setattr__(staged, "_listener", None)
        for name, value in items.items():
            staged[name] = value
        self._values.update(staged._values)
        if self._listener is not None:
            self._listener(frozenset(items) & frozenset(SETTINGS_BY_NAME))

    def as_dict(self) -> dict[str, Any]:
        """A copy of every setting's current value."""
        return dict(self._values)

    def changes(self) -> dict[str, Any]:
        """Settings whose value differs from the default."""
        return {k: v for k, v in self._values.items() if v != SETTINGS_BY_NAME[k].default}


def _make_property(name: str) -> property:
    def getter(self: Settings) -> Any:
        return self._values[name]

    return property(getter, doc=SETTINGS_BY_NAME[name].doc)


for _setting in SETTINGS:
    setattr(Settings, _setting.name, _make_property(_setting.name))


def from_object(obj: Any, namespace: str | None = None) -> dict[str, Any]:
    """Read settings from a module, class or object, like Celery's ``config_from_object``.

    ``obj`` may be an import path (``'proj.celeryconfig'`` or ``'proj.settings:Config'``).
    Without a namespace every public lower-case attribute is a setting (prefix
    helpers with ``_``); with ``namespace='CELERY'`` only ``CELERY_*`` names are
    read and ``CELERY_BROKER_URL`` becomes ``broker_url``.
    """
    if isinstance(obj, str):
        module_name, _, attr = obj.partition(":")
        try:
            target: Any = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigurationError(
                f"config_from_object({obj!r}): cannot import {module_name!r}: {exc}"
            ) from exc
        if attr:
            target = getattr(target, attr)
        obj = target
    prefix = f"{namespace}_" if namespace else ""
    # With a namespace only its names are read: reading every attribute of Django's settings
    # warns on deprecated ones (Django 4.2) and raises on some (an empty SECRET_KEY).
    values = (
        dict(obj)
        if isinstance(obj, Mapping)
        else {k: getattr(obj, k) for k in dir(obj) if k.startswith(prefix)}
    )
    found: dict[str, Any] = {}
    for key, value in values.items():
        if key.startswith("_"):
            continue
        if prefix:
            if not key.startswith(prefix):
                continue
            found[key[len(prefix) :].lower()] = value
        elif key.islower() and not callable(value) and not isinstance(value, types.ModuleType):
            found[key] = value
        elif key.isupper() and key.lower() in SETTINGS_BY_NAME:
            logger.warning(
                "config_from_object: %s is ignored; settings are lower case: %s "
                "(or pass namespace='CELERY' for CELERY_-prefixed names)",
                key,
                key.lower(),
            )
    return found


def settings_markdown() -> str:
    """The settings reference page (docs/settings.md), generated from the table."""
    lines = [
        "# Settings",
        "",
        "Generated from the settings table in `src/celeriac/config.py` by `make docs`; do not edit by hand.",
        "",
        "Set them with `app.conf.update(...)`, `app.config_from_object(...)`, or the environment",
        "(`CELERIAC_<NAME>`, e.g. `CELERIAC_WORKER_CONCURRENCY=4`; lists and dicts as JSON).",
        "An unknown name or a bad value is an error that names the setting and what it expects.",
        "",
        "| setting | default | type | unit | meaning | vs Celery |",
        "|---|---|---|---|---|---|",
    ]
    for s in SETTINGS:
        default = "`None`" if s.default is None else f"`{s.default!r}`"
        cells = [f"`{s.name}`", default, s.type, s.unit or "-", s.doc, s.celery]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    lines += [
        "",
        "## Celery settings that are accepted and ignored",
        "",
        "A Celery configuration that sets these still loads; the worker logs a warning naming each.",
        "",
        "| setting | why |",
        "|---|---|",
    ]
    lines += [f"| `{name}` | {why} |" for name, why in sorted(CELERY_IGNORED.items())]
    lines += [
        "",
        "## Celery settings that are refused",
        "",
        "Setting one of these is an error that says what to do instead.",
        "",
        "| setting | instead |",
        "|---|---|",
    ]
    lines += [f"| `{name}` | {what} |" for name, what in sorted(CELERY_REFUSED.items())]
    return "\n".join(lines) + "\n"


def django_settings_module(environ: Mapping[str, str] | None = None) -> str | None:
    """``DJANGO_SETTINGS_MODULE`` from ``environ`` (default: the process environment), or None.

    Set when an app is created, it installs the Django fix-up (``celeriac.fixups.django``),
    as it does in Celery.
    """
    environ = os.environ if environ is None else environ
    return environ.get("DJANGO_SETTINGS_MODULE") or None
