"""The validators of the settings table (:mod:`celeriac.config`), one per kind of value.

Each takes the setting's name and a value and returns the value in its checked form, or
raises :class:`~celeriac.errors.ConfigurationError` naming the setting and what it expects.
Also here: the task options a setting or annotation may name, and what a rate limit is
refused with (rate limits are not implemented yet).
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from celeriac.brokers.base import DEFAULT_PUBLISH_RETRY_POLICY, mask_password
from celeriac.brokers.redis.sentinel import refuse_tls
from celeriac.errors import ConfigurationError
from celeriac.protocol import serializers
from celeriac.protocol.entities import Queue, delivery_mode_of
from celeriac.results import SCHEMES as RESULT_SCHEMES


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` naming the closest of ``choices``, or an empty string."""
    close = difflib.get_close_matches(name, sorted(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


Validator = Callable[[str, Any], Any]


def _fail(name: str, value: Any, expected: str) -> ConfigurationError:
    return ConfigurationError(f"{name}={value!r} is invalid: expected {expected}")


# -- validators ----------------------------------------------------------------------------------


def _url(name: str, value: Any) -> str:
    if not isinstance(value, str) or "://" not in value:
        raise _fail(name, value, "a URL such as 'sqlite:///celeriac.db'")
    return value


def _optional_url(name: str, value: Any) -> str | None:
    return None if value is None else _url(name, value)


_RESULT_BACKENDS = (
    "redis://host:6379/0 (Redis, Celery's key layout; also rediss://, unix://, sentinel://), "
    "sqlite:///path.db (leave result_backend unset with the SQLite broker: results go to its file), "
    "memory:// (tests), or None (no results)"
)


def _result_backend(name: str, value: Any) -> str | None:
    """A result backend URL celeriac has: refused here, before any task is sent, otherwise."""
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise _fail(name, value, f"a result backend URL: {_RESULT_BACKENDS}")
    scheme = value.split("://", 1)[0].lower()
    refuse_tls(value, name)
    if scheme == "rpc":
        raise ConfigurationError(
            f"{name}={value!r} is not supported: celeriac has no RPC result backend (Celery's rpc:// "
            "sends each result back as a message to the caller). Use one of: " + _RESULT_BACKENDS
        )
    if "://" not in value or scheme not in RESULT_SCHEMES:
        raise ConfigurationError(
            f"{name}={mask_password(value)!r} is not a result backend celeriac has; use one of: "
            + _RESULT_BACKENDS
        )
    return value


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


#: The task options ``@app.task(...)`` takes besides ``name``, ``bind`` and ``base``
#: (``Task.OPTIONS``); ``task_annotations`` may set the same ones.
TASK_OPTIONS = frozenset(
    {
        "typing",
        "max_retries",
        "default_retry_delay",
        "autoretry_for",
        "dont_autoretry_for",
        "retry_kwargs",
        "retry_backoff",
        "retry_backoff_max",
        "retry_jitter",
        "acks_late",
        "acks_on_failure_or_timeout",
        "reject_on_worker_lost",
        "time_limit",
        "soft_time_limit",
        "ignore_result",
        "track_started",
        "queue",
        "priority",
        "delivery_mode",
        "serializer",
        "expires",
    }
)

_RATE_LIMIT_ADVICE = (
    "celeriac does not implement rate limits yet, and running tasks without their limit would silently "
    "differ from Celery. Remove it; to bound how fast a task runs, route it to a queue of its own and run "
    "one worker with a small concurrency for that queue (celeriac worker -Q that-queue -c 1)"
)


def rate_limit_refused(task: str, value: Any, where: str) -> ConfigurationError:
    """The error for a rate limit given anywhere (task option, base class, annotation):
    one wording, naming the task, the value and where it was given."""
    return ConfigurationError(
        f"rate_limit={value!r} for task {task!r} ({where}) is not supported: {_RATE_LIMIT_ADVICE}"
    )


def _annotation_map(name: str, annotation: Any) -> dict[str, dict[str, Any]]:
    example = "{'proj.tasks.add': {'acks_late': True}, '*': {'time_limit': 60}}"
    if not isinstance(annotation, Mapping):
        raise ConfigurationError(
            f"setting {name}: {annotation!r} is not supported: only dicts of task name (or '*') to task "
            f"options, such as {example}; Celery's annotation objects and import paths are not. Set the "
            "options with @app.task(...) or on a base class (base=) instead"
        )
    out: dict[str, dict[str, Any]] = {}
    for pattern, options in annotation.items():
        if not isinstance(pattern, str) or not isinstance(options, Mapping):
            raise _fail(
                name, annotation, f"a dict of task name (or '*') to a dict of options, such as {example}"
            )
        for key, value in options.items():
            if key == "rate_limit":
                if value is not None:
                    raise rate_limit_refused(pattern, value, f"{name}[{pattern!r}]")
                continue
            if key not in TASK_OPTIONS:
                raise ConfigurationError(
                    f"setting {name}[{pattern!r}]: {key!r} cannot be annotated{did_you_mean(key, TASK_OPTIONS)}: "
                    f"only task options can ({', '.join(sorted(TASK_OPTIONS))}). Define {key} in a base "
                    "class and pass it as @app.task(base=...) instead"
                )
        out[pattern] = {k: v for k, v in options.items() if k != "rate_limit"}
    return out


def _annotations(name: str, value: Any) -> tuple[dict[str, dict[str, Any]], ...] | None:
    if value is None:
        return None
    annotations = value if isinstance(value, list | tuple) else [value]
    return tuple(_annotation_map(name, annotation) for annotation in annotations)


def annotations_for(
    annotations: Sequence[Mapping[str, Mapping[str, Any]]] | None, task: str
) -> dict[str, Any]:
    """The options ``task_annotations`` sets on ``task``, in Celery's order: the first map that
    names the task, then the first that has ``'*'`` (so ``'*'`` wins where both set an option)."""
    found: dict[str, Any] = {}
    for key in (task, "*"):
        match = next((annotation[key] for annotation in annotations or () if key in annotation), None)
        found.update(match or {})
    return found


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
