"""``Signature``: one task call described as data, to be sent now, later, or by another task.

A signature is a ``dict`` with Celery's keys, so it travels inside a message (a
callback, the next step of a chain, a member of a group) as the same JSON a
Celery producer writes, and a signature dict a Celery producer wrote is one here::

    {"task": "proj.add", "args": [2], "kwargs": {}, "options": {"task_id": "..."},
     "subtask_type": null, "immutable": false, "chord_size": null}

Partial arguments: ``add.s(2)`` called with ``(3,)`` runs ``add(3, 2)`` — the new
arguments come first, as in Celery, which is how a chain passes a step's result to
the next. An immutable signature (``add.si(2, 2)``) ignores arguments given later.

``subtask_type`` says which canvas class a dict stands for (None: a task call;
``"chain"``, ``"group"``); :func:`signature` turns a dict back into that class.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from celeriac.context import default_app
from celeriac.errors import ConfigurationError
from celeriac.results.result import AsyncResult

if TYPE_CHECKING:
    from celeriac.app import Celeriac
    from celeriac.canvas.primitives import chain
    from celeriac.task import Task

#: subtask_type → the class that stands for it (filled in by ``canvas/primitives.py``).
SIGNATURE_TYPES: dict[str, type[Signature]] = {}


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, Mapping):
        return [value]
    return list(value)


class Signature(dict):  # type: ignore[type-arg]
    """A task call as data (Celery's ``Signature``): the task name, arguments and send options."""

    def __init__(
        self,
        task: str | Task | Mapping[str, Any] | None = None,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
        type: Task | None = None,  # Celery's parameter name
        subtask_type: str | None = None,
        immutable: bool = False,
        app: Celeriac | None = None,
        **ex: Any,
    ) -> None:
        self._app = app
        self._type: Task | None = type
        if isinstance(task, Mapping):
            dict.__init__(self, task)
            self.setdefault("args", ())
            self.setdefault("kwargs", {})
            self.setdefault("options", {})
            self.setdefault("subtask_type", None)
            self.setdefault("immutable", False)
            self.setdefault("chord_size", None)
            self["args"] = tuple(self["args"] or ())
            self["kwargs"] = dict(self["kwargs"] or {})
            self["options"] = dict(self["options"] or {})
            return
        if task is not None and not isinstance(task, str):
            self._type = task
            self._app = app or task.app
            name: str | None = task.name
        else:
            name = task
        dict.__init__(
            self,
            task=name,
            args=tuple(args or ()),
            kwargs=dict(kwargs or {}),
            options={**(options or {}), **ex},
            subtask_type=subtask_type,
            immutable=immutable,
            chord_size=None,
        )

    # -- Celery's attribute views ------------------------------------------------------------

    task = property(lambda self: self.get("task"))  # type: ignore[assignment]
    name = task
    args = property(lambda self: self["args"])
    kwargs = property(lambda self: self["kwargs"])
    options = property(lambda self: self["options"])
    subtask_type = property(lambda self: self.get("subtask_type"))
    immutable = property(lambda self: bool(self.get("immutable")))

    @property
    def id(self) -> str | None:
        """The task id, once frozen (or given as ``task_id``)."""
        return self["options"].get("task_id")

    @property
    def app(self) -> Celeriac:
        """The app the signature sends through: its own, its task's, else the default app."""
        app = self._app or (self._type.app if self._type is not None else None) or default_app()
        if app is None:
            raise ConfigurationError(
                f"signature {self.task!r} has no app to send through: create the app first, or pass app="
            )
        return app

    @property
    def type(self) -> Task:
        """The registered task this signature calls (NotRegisteredError if unknown here)."""
        if self._type is None:
            self._type = self.app.get_task(str(self.task))
        return self._type

    def __repr__(self) -> str:
        parts = [repr(arg) for arg in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{self.task}({', '.join(parts)}){'!' if self.immutable else ''}"

    def __reduce__(self) -> tuple[Any, ...]:
        return signature, (dict(self),)

    def __deepcopy__(self, memo: dict[int, Any]) -> Signature:
        return self.from_dict(copy.deepcopy(dict(self), memo), app=self._app)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], app: Celeriac | None = None) -> Signature:
        """The signature (or chain, group) ``data`` describes."""
        kind = SIGNATURE_TYPES.get(data.get("subtask_type") or "", Signature)
        if kind is not Signature and cls is Signature:
            return kind.from_dict(data, app=app)
        return cls(data, app=app)

    # -- building ------------------------------------------------------------------------------

    def _merge(
        self,
        args: Sequence[Any] | None,
        kwargs: Mapping[str, Any] | None,
        options: Mapping[str, Any] | None,
        force: bool = False,
    ) -> tuple[tuple[Any, ...], dict[str, Any], dict[str, Any]]:
        merged_options = {**self.options, **(options or {})}
        if self.immutable and not force:
            return tuple(self.args), dict(self.kwargs), merged_options
        return (
            tuple(args or ()) + tuple(self.args),
            {**self.kwargs, **(kwargs or {})},
            merged_options,
        )

    def clone(
        self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None, **opts: Any
    ) -> Signature:
        """A copy, with partial ``args`` put first, ``kwargs`` and options merged over its own
        (an immutable signature keeps its arguments)."""
        new_args, new_kwargs, new_options = self._merge(args, kwargs, opts)
        data = {**dict(self), "args": new_args, "kwargs": new_kwargs, "options": copy.deepcopy(new_options)}
        clone = type(self).from_dict(data, app=self._app)
        clone._type = self._type
        return clone

    partial = clone

    def set(self, immutable: bool | None = None, **options: Any) -> Signature:
        """Set send options (``queue``, ``countdown``, ...) in place; return the signature."""
        if immutable is not None:
            self["immutable"] = immutable
        self["options"].update(options)
        return self

    def set_immutable(self, immutable: bool) -> None:
        """Make the signature ignore (or accept) arguments given later."""
        self["immutable"] = immutable

    def _append_option(self, key: str, value: Any) -> None:
        items = _as_list(self["options"].get(key))
        if value not in items:
            items.append(value)
        self["options"][key] = items

    def link(self, callback: Mapping[str, Any]) -> Mapping[str, Any]:
        """Call ``callback`` with this task's return value once it succeeds; return ``callback``."""
        self._append_option("link", callback)
        return callback

    def link_error(self, errback: Mapping[str, Any]) -> Mapping[str, Any]:
        """Call ``errback`` if this task fails; return ``errback``."""
        self._append_option("link_error", errback)
        return errback

    def on_error(self, errback: Mapping[str, Any]) -> Signature:
        """Same as :meth:`link_error`, but return the signature (for chaining calls)."""
        self.link_error(errback)
        return self

    def freeze(
        self,
        _id: str | None = None,
        group_id: str | None = None,
        chord: Any = None,
        root_id: str | None = None,
        parent_id: str | None = None,
        group_index: int | None = None,
    ) -> AsyncResult:
        """Give the signature its task id now (``_id``, else the one it has, else a new one) and
        return the result handle its send will have."""
        options = self["options"]
        if chord is not None:
            options["chord"] = chord
        task_id = _id or self["options"].get("task_id") or str(uuid.uuid4())
        options["task_id"] = task_id
        for key, value in (
            ("group_id", group_id),
            ("root_id", root_id),
            ("parent_id", parent_id),
            ("group_index", group_index),
        ):
            if value is not None:
                options[key] = value
        return self.AsyncResult(task_id)

    def AsyncResult(self, task_id: str) -> AsyncResult:
        """A result handle on ``task_id`` in this signature's app."""
        return AsyncResult(task_id, task_name=self.task, app=self.app)

    # -- sending and running -------------------------------------------------------------------

    def apply_async(
        self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None, **options: Any
    ) -> AsyncResult:
        """Send the call, partial ``args``/``kwargs`` and ``options`` merged in (see :meth:`clone`)."""
        new_args, new_kwargs, new_options = self._merge(args, kwargs, options)
        task_id = new_options.pop("task_id", None)
        app = self.app
        task = app.tasks.get(str(self.task)) if self._type is None else self._type
        if task is not None:
            return task.apply_async(new_args, new_kwargs, task_id=task_id, **new_options)
        return app.send_task(str(self.task), new_args, new_kwargs, task_id=task_id, **new_options)

    def delay(self, *args: Any, **kwargs: Any) -> AsyncResult:
        """``apply_async(args, kwargs)``."""
        return self.apply_async(args, kwargs)

    def apply(
        self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None, **options: Any
    ) -> AsyncResult:
        """Run the call in this process (as ``Task.apply``)."""
        new_args, new_kwargs, new_options = self._merge(args, kwargs, options)
        task_id = new_options.pop("task_id", None)
        return self.type.apply(new_args, new_kwargs, task_id=task_id, **new_options)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the task's function here, now (partial arguments merged, even if immutable)."""
        new_args, new_kwargs, _ = self._merge(args, kwargs, None, force=True)
        return self.type(*new_args, **new_kwargs)

    # -- composition ---------------------------------------------------------------------------

    def __or__(self, other: Any) -> chain:
        """``a | b``: the chain of both (chains are joined, not nested)."""
        if not isinstance(other, Signature):
            return NotImplemented
        if self.subtask_type == "group":
            return SIGNATURE_TYPES["chord"](self, other)  # type: ignore[return-value]
        return SIGNATURE_TYPES["chain"](self, other)  # type: ignore[return-value]


def signature(
    varies: str | Task | Mapping[str, Any],
    args: Sequence[Any] | None = None,
    kwargs: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
    app: Celeriac | None = None,
    **ex: Any,
) -> Signature:
    """A signature for task ``varies`` (a name or a task), or the one a signature dict describes."""
    if isinstance(varies, Mapping):
        if isinstance(varies, Signature):
            return varies.clone()
        return Signature.from_dict(varies, app=app)
    return Signature(varies, args, kwargs, options, app=app, **ex)


subtask = signature


def maybe_signature(
    value: Mapping[str, Any] | None, app: Celeriac | None = None, clone: bool = False
) -> Signature | None:
    """``value`` as a signature: None stays None, a dict becomes a signature, a signature is
    returned as is (a copy with ``clone``)."""
    if value is None:
        return None
    if isinstance(value, Signature):
        found = value.clone() if clone else value
    elif isinstance(value, Mapping):
        found = Signature.from_dict(value, app=app)
    else:
        raise TypeError(
            f"expected a signature or a signature dict, got {type(value).__name__} {value!r:.100}"
        )
    if app is not None and found._app is None:
        found._app = app
    return found


def plain(value: Any) -> Any:
    """``value`` with every signature (and list of them) as plain dicts and lists, for a message."""
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


def signatures(values: Iterable[Any], app: Celeriac | None = None) -> list[Signature]:
    """Each of ``values`` as a signature."""
    found = []
    for value in values:
        sig = maybe_signature(value, app=app)
        assert sig is not None
        found.append(sig)
    return found
