"""The settings table: one row per setting, Celery's names and units.

Every setting is declared once in :data:`SETTINGS` with its default, type, unit
and documentation; ``docs/settings.md`` is generated from it (``make docs``). Values are validated when they are set: a bad
value or an unknown name raises :class:`~celeriac.errors.ConfigurationError`
naming the setting, the closest valid name and the expected type and unit.

Celery settings that celeriac does not implement are accepted with a warning
that says so (see :data:`CELERY_IGNORED`), so a Celery configuration module
loads unchanged; those whose absence would change what a deployment does are
refused with what to write instead (:data:`CELERY_REFUSED`).

Celery's old upper-case names (``BROKER_URL``, ``CELERY_ALWAYS_EAGER``,
``CELERYD_CONCURRENCY``, ...: :data:`CELERY_OLD_NAMES`, the table Celery 5 still
reads) are read as their new names, with one warning per name saying what to
rename it to. A configuration that mixes old and new names is refused, as Celery
refuses it; one that gives both names of one setting uses the new one. With
``namespace='CELERY'`` (Django settings) both ``CELERY_TASK_ALWAYS_EAGER`` and the
old ``CELERY_ALWAYS_EAGER`` are read, as Celery reads them.

Precedence, as in Celery: a configuration source (``config_from_object``, the
constructor's ``config_source``) is the layer under the app's own settings, so a value
given to the app's constructor (``Celery('proj', broker=...)``) or set in code
(``app.conf.update(...)``, ``app.conf.x = ...``) wins over the source's, whichever
came first. Environment: ``CELERIAC_<NAME>`` (for example ``CELERIAC_BROKER_URL``)
overrides the values given to the app's constructor and ``config_from_object``;
``CELERY_BROKER_URL`` and ``CELERY_RESULT_BACKEND`` are honoured too. Values set
in code afterwards (``app.conf.x = ...``) win. Values from the environment are
parsed for the setting's type (JSON for lists and mappings).
"""

from __future__ import annotations

import importlib
import logging
import os
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from celeriac.brokers.base import DEFAULT_PUBLISH_RETRY_POLICY
from celeriac.config.celery_names import (
    _CELERY_UNREAD_NAMES,
    CELERY_IGNORED,
    CELERY_OLD_NAMES,
    CELERY_REFUSED,
)
from celeriac.config.validators import (
    _POLICY_KEYS as _POLICY_KEYS,
)
from celeriac.config.validators import (
    _RATE_LIMIT_ADVICE as _RATE_LIMIT_ADVICE,
)
from celeriac.config.validators import (
    _RESULT_BACKENDS as _RESULT_BACKENDS,
)
from celeriac.config.validators import (
    TASK_OPTIONS as TASK_OPTIONS,
)
from celeriac.config.validators import (
    THRESHOLD_KINDS as THRESHOLD_KINDS,
)
from celeriac.config.validators import (
    _accept as _accept,
)
from celeriac.config.validators import (
    _annotation_map as _annotation_map,
)
from celeriac.config.validators import (
    _annotations as _annotations,
)
from celeriac.config.validators import (
    _bind as _bind,
)
from celeriac.config.validators import (
    _bool as _bool,
)
from celeriac.config.validators import (
    _delivery_mode as _delivery_mode,
)
from celeriac.config.validators import (
    _fail as _fail,
)
from celeriac.config.validators import (
    _int_at_least as _int_at_least,
)
from celeriac.config.validators import (
    _mapping as _mapping,
)
from celeriac.config.validators import (
    _optional_accept as _optional_accept,
)
from celeriac.config.validators import (
    _optional_priority as _optional_priority,
)
from celeriac.config.validators import (
    _optional_str as _optional_str,
)
from celeriac.config.validators import (
    _optional_url as _optional_url,
)
from celeriac.config.validators import (
    _prefetch as _prefetch,
)
from celeriac.config.validators import (
    _protocol as _protocol,
)
from celeriac.config.validators import (
    _queues as _queues,
)
from celeriac.config.validators import (
    _result_backend as _result_backend,
)
from celeriac.config.validators import (
    _retry_policy as _retry_policy,
)
from celeriac.config.validators import (
    _route_entry as _route_entry,
)
from celeriac.config.validators import (
    _routes as _routes,
)
from celeriac.config.validators import (
    _seconds as _seconds,
)
from celeriac.config.validators import (
    _serializer as _serializer,
)
from celeriac.config.validators import (
    _str as _str,
)
from celeriac.config.validators import (
    _str_list as _str_list,
)
from celeriac.config.validators import (
    _thresholds as _thresholds,
)
from celeriac.config.validators import (
    _timezone as _timezone,
)
from celeriac.config.validators import (
    _url as _url,
)
from celeriac.config.validators import (
    annotations_for as annotations_for,
)
from celeriac.config.validators import (
    did_you_mean as did_you_mean,
)
from celeriac.config.validators import (
    int_validator as int_validator,
)
from celeriac.config.validators import (
    priority_validator as priority_validator,
)
from celeriac.config.validators import (
    rate_limit_refused as rate_limit_refused,
)
from celeriac.config.validators import (
    seconds_validator as seconds_validator,
)
from celeriac.errors import ConfigurationError
from celeriac.protocol.entities import Queue

if TYPE_CHECKING:
    from celeriac.app import Celeriac

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
    _S("task_annotations", None, "dict or list of dicts", "", "Task options set from the configuration: `{'proj.tasks.add': {'acks_late': True}, '*': {'time_limit': 60}}` (or a list of such dicts; the first that names a task applies, then the first with `'*'`, which wins where both set an option, as in Celery). Only task options (those of `@app.task`); `rate_limit` is refused.", _annotations, "dicts of task options only; rate_limit, handlers and annotation objects are refused"),
    # results
    _S("result_backend", None, "URL", "", "Where results are stored: `sqlite:///path.db` or `redis://host:6379/0` (Celery's key layout; also `rediss://`, `unix://`, `sentinel://host:26379/0;...`). None: the broker's file when the broker is SQLite, else no results. Celery's `rpc://` and other backends are refused when set, before any task is sent.", _result_backend, "default differs: Celery stores no results unless set; `rpc://` is refused"),
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
    _S("worker_task_log_format", "[%(asctime)s: %(levelname)s/%(processName)s] %(task_name)s[%(task_id)s]: %(message)s", "str", "", "Log line format of task loggers (`get_task_logger`): also `%(task_name)s` and `%(task_id)s` of the running task.", _str),
    # periodic tasks
    _S("beat_schedule", {}, "dict", "", "Periodic tasks: not implemented yet. A worker whose app has entries here logs a WARNING at start naming each entry that will not run; `celeriac worker -B` is refused.", _mapping, "accepted, not run: periodic tasks are not implemented yet"),
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

_NEW_NAMES = frozenset(SETTINGS_BY_NAME) | frozenset(CELERY_IGNORED) | frozenset(CELERY_REFUSED)
_CELERY_NEW_NAMES = _NEW_NAMES | frozenset(CELERY_OLD_NAMES.values())

_ENV_ALIASES = {"CELERY_BROKER_URL": "broker_url", "CELERY_RESULT_BACKEND": "result_backend"}


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


# -- Celery's old names ---------------------------------------------------------------------------


def rename_old_names(values: Mapping[str, Any], where: str, rename_to: str = "") -> dict[str, Any]:
    """``values`` with Celery's old names replaced by their new ones.

    One warning per old name, naming the new name to write instead (``rename_to`` +
    the new name in upper case with a namespace such as ``'CELERY_'``). An old name whose
    new name is in ``values`` too is dropped with a warning: the new one is used, as in
    Celery. An old name of a setting celeriac refuses or does not know raises
    :class:`~celeriac.errors.ConfigurationError` naming both names.
    """
    out: dict[str, Any] = {}
    for name, value in values.items():
        new = CELERY_OLD_NAMES.get(name)
        if new is None:
            out[name] = value
            continue
        if new not in SETTINGS_BY_NAME and new not in CELERY_IGNORED:
            raise ConfigurationError(f"{where}: {name} is Celery's old name of {new}: {_unknown(new)}")
        write = f"{rename_to}{new.upper()}" if rename_to else new
        if new in values:
            logger.warning(
                "%s: %s and %s are both set; %s is used (%s is Celery's old name of %s): remove %s",
                where, name, write, write, name, new, name,
            )  # fmt: skip
            continue
        logger.warning("%s: read %s (Celery's old name) as %s; rename it to %s", where, name, new, write)
        out[new] = value
    return out


def refuse_mixed_names(names: Iterable[str], where: str) -> None:
    """Refuse old and new setting names in one configuration, as Celery does, naming each old
    name with its new one (an old name given together with its own new name is not a mix)."""
    names = set(names)
    pairs = {CELERY_OLD_NAMES[name] for name in names if CELERY_OLD_NAMES.get(name) in names}
    new = sorted(name for name in names if name in _CELERY_NEW_NAMES and name not in pairs)
    old = sorted(name for name in names if name in CELERY_OLD_NAMES and CELERY_OLD_NAMES[name] not in pairs)
    if old and new:
        renames = ", ".join(f"{name} to {CELERY_OLD_NAMES[name]}" for name in old)
        raise ConfigurationError(
            f"{where} mixes Celery's old upper-case setting names with new ones ({', '.join(new)}), "
            f"which Celery refuses too: rename {renames}"
        )


def _unread_upper_name(name: str) -> str | None:
    """What to write instead of an upper-case name that looks like a setting but is not read
    (in a configuration read without a namespace)."""
    if name in _CELERY_UNREAD_NAMES:
        new = _CELERY_UNREAD_NAMES[name]
        return f"Celery does not read {name} either (its docs list it as an old name): write {new}"
    if name.lower() in SETTINGS_BY_NAME:
        return f"settings are lower case: {name.lower()}"
    if name.startswith("CELERY_") and name[len("CELERY_") :].lower() in _NEW_NAMES:
        new = name[len("CELERY_") :].lower()
        return f"CELERY_-prefixed names are read with namespace='CELERY' only: write {new}, or pass the namespace"
    return None


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

    __slots__ = ("_explicit", "_listener", "_values")

    _values: dict[str, Any]
    _listener: Callable[[frozenset[str]], None] | None
    #: names set by the app's constructor, in code or from the environment: a configuration
    #: source (:meth:`load`) does not change them
    _explicit: set[str]

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
    task_annotations: tuple[dict[str, dict[str, Any]], ...] | None
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
    worker_task_log_format: str
    beat_schedule: dict[str, Any]
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
        object.__setattr__(self, "_explicit", set())
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
            return self._values[CELERY_OLD_NAMES.get(name, name)]
        except KeyError:
            raise _unknown(name) from None

    def __setitem__(self, name: str, value: Any) -> None:
        if name in CELERY_OLD_NAMES:
            for new, renamed in rename_old_names({name: value}, "app.conf").items():
                self[new] = renamed
            return
        setting = SETTINGS_BY_NAME.get(name)
        if setting is None:
            if name in CELERY_IGNORED:
                logger.warning("setting %s is ignored: %s", name, CELERY_IGNORED[name])
                return
            raise _unknown(name)
        self._values[name] = setting.validate(name, value)
        self._explicit.add(name)
        if self._listener is not None:
            self._listener(frozenset((name,)))

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __contains__(self, name: object) -> bool:
        return name in self._values or (isinstance(name, str) and CELERY_OLD_NAMES.get(name) in self._values)

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def get(self, name: str, default: Any = None) -> Any:
        """The value of ``name`` (or of Celery's old name for it), or ``default`` for names that
        are not settings."""
        return self._values.get(CELERY_OLD_NAMES.get(name, name), default)

    def update(self, values: Mapping[str, Any] | Iterable[tuple[str, Any]] = (), **kwargs: Any) -> None:
        """Set several settings; the first bad one raises before any is applied.

        Celery's old names are read as their new ones; old and new names together are refused.
        """
        items = dict(values, **kwargs)
        refuse_mixed_names(items, "app.conf.update()")
        self._apply(rename_old_names(items, "app.conf.update()"), explicit=True)

    def load(self, values: Mapping[str, Any]) -> None:
        """Set the values of a configuration source (``config_from_object``), new names only.

        As in Celery, the source is the layer under the app's own settings: a setting given
        to the app's constructor, set in code (:meth:`update`, ``conf.x = ...``) or from the
        environment keeps its value, whether it was set before the source was loaded or after.
        The source's value is still checked (a bad one raises), so it is right when it comes
        to be used.
        """
        self._apply(values, explicit=False)

    def _apply(self, items: Mapping[str, Any], explicit: bool) -> None:
        """Check every value first (the first bad one raises before any is applied), then set
        them; not ``explicit``: only those of names not set explicitly."""
        staged = Settings.__new__(Settings)
        object.__setattr__(staged, "_values", dict(self._values))
        object.__setattr__(staged, "_listener", None)
        object.__setattr__(staged, "_explicit", set())
        for name, value in items.items():
            staged[name] = value
        applied = staged._explicit if explicit else staged._explicit - self._explicit
        self._values.update({name: staged._values[name] for name in applied})
        if explicit:
            self._explicit.update(applied)
        if self._listener is not None:
            self._listener(frozenset(applied))

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


def from_object(obj: Any, namespace: str | None = None, silent: bool = False) -> dict[str, Any]:
    """Read settings from a module, class or object, like Celery's ``config_from_object``.

    ``obj`` may be an import path (``'proj.celeryconfig'`` or ``'proj.settings:Config'``).
    Without a namespace every public lower-case attribute is a setting (prefix
    helpers with ``_``), and Celery's old upper-case names are read as the new ones
    (a mix of both is refused). With ``namespace='CELERY'``, ``CELERY_BROKER_URL``
    becomes ``broker_url``; Celery's old names (``CELERY_ALWAYS_EAGER``, and
    unprefixed ones such as ``BROKER_URL``) are read too, as Celery reads them, the
    prefixed new name winning. Returns new names only; nothing if ``silent`` and the module
    cannot be imported.
    """
    where = "config_from_object(" + (repr(obj) if isinstance(obj, str) else _describe(obj)) + ")"
    if isinstance(obj, str):
        module_name, _, attr = obj.partition(":")
        try:
            target: Any = importlib.import_module(module_name)
        except ImportError as exc:
            if silent:
                return {}
            raise ConfigurationError(f"{where}: cannot import {module_name!r}: {exc}") from exc
        if attr:
            target = getattr(target, attr)
        obj = target
    prefix = f"{namespace}_" if namespace else ""
    # With a namespace only its names, and Celery's old names it falls back on, are read:
    # reading every attribute of Django's settings warns on deprecated ones (Django 4.2) and
    # raises on some (an empty SECRET_KEY).
    values = (
        dict(obj)
        if isinstance(obj, Mapping)
        else {k: getattr(obj, k) for k in dir(obj) if k.startswith(prefix) or k in CELERY_OLD_NAMES}
    )
    values = {k: v for k, v in values.items() if isinstance(k, str) and not k.startswith("_")}
    if namespace:
        return _from_namespace(values, prefix, where)
    found: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, types.ModuleType):
            continue
        # a lower-case function or class is a helper of the module, unless a setting has its name
        # (``task_routes = route_task`` is a router)
        if key in CELERY_OLD_NAMES or (key.islower() and (not callable(value) or _known(key))):
            found[key] = value
        elif key.isupper() and (hint := _unread_upper_name(key)) is not None:
            logger.warning("%s: %s is ignored; %s", where, key, hint)
    refuse_mixed_names(found, where)
    return rename_old_names(found, where)


def _known(name: str) -> bool:
    return name in SETTINGS_BY_NAME or name in CELERY_IGNORED or name in CELERY_REFUSED


def _from_namespace(values: Mapping[str, Any], prefix: str, where: str) -> dict[str, Any]:
    """The settings in ``values`` read with a namespace (``prefix`` is ``'CELERY_'``).

    ``CELERY_<NEW NAME>`` is the new name. An old name is read when it is prefixed (and not a
    new name once the prefix is off) or, unprefixed, when celeriac knows its setting: Django
    settings hold many upper-case names, and only those meant for Celery are taken.
    """
    found: dict[str, Any] = {}
    old: dict[str, Any] = {}
    for key, value in values.items():
        prefixed = key.startswith(prefix)
        name = key[len(prefix) :].lower() if prefixed else ""
        if prefixed and (name in _CELERY_NEW_NAMES or key not in CELERY_OLD_NAMES):
            found[name] = value
        elif key in CELERY_OLD_NAMES and (prefixed or CELERY_OLD_NAMES[key] in _NEW_NAMES):
            old[key] = value
    targets = {CELERY_OLD_NAMES[name] for name in old}
    shadowing = {name: value for name, value in found.items() if name in targets}
    renamed = rename_old_names({**old, **shadowing}, where, rename_to=prefix)
    return {**renamed, **found}


def _describe(obj: Any) -> str:
    if isinstance(obj, types.ModuleType):
        return obj.__name__
    if isinstance(obj, type):
        return obj.__qualname__
    return "a " + type(obj).__name__


# -- periodic tasks (not implemented yet) ----------------------------------------------------


def _beat_instead(app: Celeriac) -> str:
    project = app.main or "proj"
    return (
        "Send them from elsewhere until then: keep Celery's beat running "
        f"(`celery -A {project} beat`, with your Celery app) on the same Redis or RabbitMQ broker, whose "
        f"messages celeriac workers run, or call each task from cron with `celeriac call -A {project} TASK`"
    )


def _beat_entries(schedule: Mapping[str, Any]) -> str:
    def entry(name: str, spec: Any) -> str:
        task = spec.get("task") if isinstance(spec, Mapping) else None
        return f"{name!r} (task {task})" if task else repr(name)

    return ", ".join(entry(name, spec) for name, spec in schedule.items())


def beat_schedule_warning(app: Celeriac) -> str | None:
    """The warning a worker logs at start when ``beat_schedule`` has entries, none of which
    will run; None for an empty schedule."""
    schedule = app.conf.beat_schedule
    if not schedule:
        return None
    return (
        f"beat_schedule has {len(schedule)} entr{'y' if len(schedule) == 1 else 'ies'} that will NOT run: "
        f"{_beat_entries(schedule)}. Periodic tasks (beat) are not implemented yet in celeriac. "
        + _beat_instead(app)
    )


def beat_unsupported(app: Celeriac) -> str | None:
    """Why ``celeriac worker -B/--beat`` cannot start (None once periodic tasks are implemented)."""
    schedule = app.conf.beat_schedule
    entries = f" (beat_schedule: {_beat_entries(schedule)})" if schedule else ""
    return (
        f"-B/--beat: periodic tasks (beat) are not implemented yet, so this worker cannot run them{entries}. "
        "Start the worker without -B. " + _beat_instead(app)
    )


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
        "As in Celery, `config_from_object` is the layer under the app's own settings: what",
        "`Celery(...)` is given and what code sets (`app.conf.update`, before or after) win over it.",
        "The environment wins over both, except over code that sets a setting after the last",
        "`config_from_object`.",
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
    lines += [
        "",
        "## Celery's old setting names",
        "",
        "Celery 5 still reads its pre-4.0 upper-case names; so does celeriac, each as its new name with a",
        "warning saying what to rename it to. A configuration that mixes old and new names is refused, as",
        "Celery refuses it (one that gives both names of a setting uses the new one). With",
        "`config_from_object(..., namespace='CELERY')` the new names are `CELERY_` + the new name in upper",
        "case (`CELERY_TASK_ALWAYS_EAGER`), and the old names are read too, as Celery reads them.",
        "An old name follows its new name's rule: ignored with a warning, refused, or an unknown setting.",
        "",
        "| old name | new name | in celeriac |",
        "|---|---|---|",
    ]
    for old, new in sorted(CELERY_OLD_NAMES.items()):
        if new in SETTINGS_BY_NAME:
            status = "read"
        elif new in CELERY_IGNORED:
            status = "ignored with a warning"
        elif new in CELERY_REFUSED:
            status = "refused"
        else:
            status = "not a celeriac setting: an error"
        lines.append(f"| `{old}` | `{new}` | {status} |")
    return "\n".join(lines) + "\n"


def django_settings_module(environ: Mapping[str, str] | None = None) -> str | None:
    """``DJANGO_SETTINGS_MODULE`` from ``environ`` (default: the process environment), or None.

    Set when an app is created, it installs the Django fix-up (``celeriac.fixups.django``),
    as it does in Celery.
    """
    environ = os.environ if environ is None else environ
    return environ.get("DJANGO_SETTINGS_MODULE") or None
