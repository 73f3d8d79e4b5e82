"""``chain`` and ``group``: builders that turn signatures into messages, in Celery's wire form.

Nothing here runs a task; each primitive hands messages to the producer and returns
result handles. What happens after a task (the next step, callbacks) is the worker's
part, in ``canvas/hooks.py``.

chain
    ``chain(a, b, c)`` (also ``a | b | c``) sends only ``a``; its message carries the
    rest in the body's embed, ``{"chain": [c, b]}``: reversed, so the worker pops the
    next step from the end. Each step gets its task id before anything is sent, so
    ``apply_async`` returns the last step's handle at once, its ``parent`` the one
    before, and so on. ``link_error`` applies to every step, ``link`` to the last.
group
    ``group(a, b, c)`` sends every member in one broker round trip; each message
    carries the group id in its ``group`` header and its position in
    ``group_index``, and ``apply_async`` returns a :class:`GroupResult` in that order.

chord
    ``chord(header, body)`` (also ``group | task``, ``chain(..., group, task, ...)``,
    ``chord(header)(body)``) sends every header member as a group does, each with the
    body (a signature dict with Celery's ``chord_size``) in its embed's ``chord``;
    the worker sends the body once every member is counted (``canvas/hooks.py``).
    Steps after a chord in a chain join its body.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from celeriac.canvas.signature import SIGNATURE_TYPES, Signature, maybe_signature, plain
from celeriac.context import current_request
from celeriac.errors import ChordError, ConfigurationError
from celeriac.results.result import AsyncResult, GroupResult
from celeriac.states import FAILURE

if TYPE_CHECKING:
    from celeriac.app import Celeriac
    from celeriac.sending import Outbound


def _flatten(tasks: Iterable[Any], app: Celeriac | None) -> list[Signature]:
    found: list[Signature] = []
    for task in tasks:
        sig = maybe_signature(task, app=app)
        if sig is None:
            raise TypeError("chain(): a step is None")
        if isinstance(sig, chain):
            found.extend(_flatten(sig.tasks, app))
        else:
            found.append(sig)
    return found


def _upgrade_chords(steps: list[Signature], app: Celeriac | None) -> list[Signature]:
    """A group followed by a step is a chord (Celery's rule); the steps after a chord run after
    its body, so they join the body: ``chain(a, group, b, c)`` is ``chain(a, chord(group, b | c))``."""
    out: list[Signature] = []
    for index, step in enumerate(steps):
        rest = steps[index + 1 :]
        if isinstance(step, group) and rest:
            body = rest[0] if len(rest) == 1 else chain(*rest, app=app)
            out.append(chord(step, body, app=app))
            return out
        if isinstance(step, chord) and rest:
            body = chain(step.body, *rest, app=app)
            out.append(chord(step.header, body, app=app, **step.options))
            return out
        out.append(step)
    return out


def _tasks_of(tasks: tuple[Any, ...]) -> list[Any]:
    """``f(a, b)`` and ``f([a, b])`` (or a generator) both mean the tasks a, b."""
    if len(tasks) == 1 and not isinstance(tasks[0], Mapping):
        return list(tasks[0])
    return list(tasks)


class chain(Signature):  # Celery's name
    """Tasks run one after the other, each step's return value the next step's first argument."""

    def __init__(self, *tasks: Any, app: Celeriac | None = None, **options: Any) -> None:
        if len(tasks) == 1 and isinstance(tasks[0], Mapping) and tasks[0].get("subtask_type") == "chain":
            Signature.__init__(self, tasks[0], app=app)
            self["kwargs"]["tasks"] = _flatten(self["kwargs"].get("tasks") or (), app)
            return
        steps = _upgrade_chords(_flatten(_tasks_of(tasks), app), app)
        if app is None:
            app = next((step._app for step in steps if step._app is not None), None)
        Signature.__init__(self, "celery.chain", (), {"tasks": steps}, options, subtask_type="chain", app=app)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], app: Celeriac | None = None) -> chain:
        return cls(data, app=app)

    @property
    def tasks(self) -> list[Signature]:
        """The steps, in order."""
        return list(self["kwargs"]["tasks"])

    def __repr__(self) -> str:
        return " | ".join(map(repr, self.tasks)) or "chain()"

    def clone(
        self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None, **opts: Any
    ) -> chain:
        copy = chain(*(step.clone() for step in self.tasks), app=self._app, **{**self.options, **opts})
        copy["immutable"] = self.immutable
        if args and not self.immutable and copy.tasks:
            copy["kwargs"]["tasks"][0] = copy.tasks[0].clone(args, kwargs)
        return copy

    def link(self, callback: Mapping[str, Any]) -> Mapping[str, Any]:
        """Call ``callback`` with the last step's return value."""
        return self.tasks[-1].link(callback)

    def link_error(self, errback: Mapping[str, Any]) -> Mapping[str, Any]:
        """Call ``errback`` when any step fails (the chain stops there)."""
        for step in self.tasks:
            step.link_error(errback)
        return errback

    def _prepare(
        self, args: Sequence[Any] | None, kwargs: Mapping[str, Any] | None, options: dict[str, Any]
    ) -> tuple[list[Signature], AsyncResult]:
        """Copies of the steps, each with its task id, and the last step's handle (its parents linked)."""
        if not self.tasks:
            raise ValueError("chain() has no tasks")
        steps = [step.clone() for step in self.tasks]
        if args or kwargs:
            steps[0] = steps[0].clone(args, kwargs)
        for errback in _as_sigs(options.pop("link_error", None)):
            for step in steps:
                step.link_error(errback)
        for callback in _as_sigs(options.pop("link", None)):
            steps[-1].link(callback)
        for key in ("group_id", "group_index"):  # a chain in a group: its last step is the member
            if key in options:
                steps[-1].set(**{key: options.pop(key)})
        first_id = options.pop("task_id", None) or steps[0].options.get("task_id") or str(uuid.uuid4())
        parent = current_request()
        root_id = options.get("root_id") or (
            parent.root_id if parent and not parent.called_directly else None
        )
        root_id = root_id or first_id
        result: AsyncResult | None = None
        for index, step in enumerate(steps):
            if isinstance(step, group | chord):
                step.set(root_id=root_id)
                handle: AsyncResult = step.freeze(first_id if index == 0 else None)
            else:
                handle = step.freeze(first_id if index == 0 else None, root_id=root_id)
            if index:
                step["options"].setdefault("parent_id", steps[index - 1].id)
            handle.parent = result
            result = handle
        assert result is not None
        return steps, result

    def apply_async(
        self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None, **options: Any
    ) -> AsyncResult:
        """Send the first step, the rest in its message (Celery's layout); return the last step's
        handle (``.parent`` is the step before). Eager (``task_always_eager``): run it here."""
        options = {**self.options, **options}
        if self.app.conf.task_always_eager:
            return self.apply(args, kwargs, **options)
        steps, result = self._prepare(args, kwargs, options)
        first, rest = steps[0], steps[1:]
        first.apply_async(chain=[plain(step) for step in reversed(rest)] or None, **options)
        return result

    def apply(
        self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None, **options: Any
    ) -> AsyncResult:
        """Run every step here, in order, each with the previous step's return value; stop at the
        first failure (its errbacks run). Returns the last run step's result."""
        options = {**self.options, **options}
        steps, _ = self._prepare(args, kwargs, options)
        options.pop("root_id", None)
        result: AsyncResult | None = None
        previous: tuple[Any, ...] = ()
        for step in steps:
            handle = step.apply(previous, **options) if result is None else step.apply(previous)
            handle.parent = result
            result = handle
            if not handle.successful():
                break
            previous = (handle.get(),)
        assert result is not None
        return result

    def __call__(self, *args: Any, **kwargs: Any) -> AsyncResult:  # type: ignore[override]
        """Same as ``apply_async(args, kwargs)`` (Celery's)."""
        return self.apply_async(args, kwargs)

    def freeze(self, _id: str | None = None, **kwargs: Any) -> AsyncResult:
        """Give every step its task id; return the last step's handle."""
        steps, result = self._prepare(None, None, {"task_id": _id} if _id else {})
        self["kwargs"]["tasks"] = steps
        return result


class group(Signature):  # Celery's name
    """Tasks sent together to run in parallel; their results read as one :class:`GroupResult`."""

    def __init__(self, *tasks: Any, app: Celeriac | None = None, **options: Any) -> None:
        if len(tasks) == 1 and isinstance(tasks[0], Mapping) and tasks[0].get("subtask_type") == "group":
            Signature.__init__(self, tasks[0], app=app)
            members = self["kwargs"].get("tasks") or ()
        else:
            members = _tasks_of(tasks)
        sigs = []
        for member in members:
            sig = maybe_signature(member, app=app)
            if sig is None:
                raise TypeError("group(): a member is None")
            sigs.append(sig)
        if app is None:
            app = next((sig._app for sig in sigs if sig._app is not None), None)
        if len(tasks) == 1 and isinstance(tasks[0], Mapping) and tasks[0].get("subtask_type") == "group":
            self["kwargs"]["tasks"] = sigs
            self._app = app
            return
        Signature.__init__(self, "celery.group", (), {"tasks": sigs}, options, subtask_type="group", app=app)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], app: Celeriac | None = None) -> group:
        return cls(data, app=app)

    @property
    def tasks(self) -> list[Signature]:
        """The members, in order."""
        return list(self["kwargs"]["tasks"])

    def __repr__(self) -> str:
        return f"group([{', '.join(map(repr, self.tasks))}])"

    def __len__(self) -> int:  # a dict's length would be its 7 keys
        return len(self["kwargs"]["tasks"])

    def __bool__(self) -> bool:
        return True

    def clone(
        self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None, **opts: Any
    ) -> group:
        copy = group([member.clone() for member in self.tasks], app=self._app, **{**self.options, **opts})
        copy["immutable"] = self.immutable
        return copy

    def link(self, callback: Mapping[str, Any]) -> Mapping[str, Any]:
        """Call ``callback`` after each member, with that member's return value."""
        for member in self.tasks:
            member.link(callback)
        return callback

    def link_error(self, errback: Mapping[str, Any]) -> Mapping[str, Any]:
        """Call ``errback`` once for each member that fails."""
        for member in self.tasks:
            member.link_error(errback)
        return errback

    def _members(
        self, args: Sequence[Any] | None, kwargs: Mapping[str, Any] | None, options: dict[str, Any]
    ) -> tuple[str, list[tuple[Signature, dict[str, Any]]]]:
        group_id = options.pop("task_id", None) or self.options.get("task_id") or str(uuid.uuid4())
        for key in ("group_id", "group_index", "chain"):
            if options.pop(key, None) and key == "chain":
                raise ConfigurationError(
                    "group().apply_async(chain=...): a group followed by a task is a chord: "
                    "use chord(group, task) or group | task"
                )
        links = _as_sigs(options.pop("link", None))
        errbacks = _as_sigs(options.pop("link_error", None))
        members = []
        for index, member in enumerate(self.tasks):
            sig = member.clone(args, kwargs) if (args or kwargs) and not self.immutable else member.clone()
            for callback in links:
                sig.link(callback)
            for errback in errbacks:
                sig.link_error(errback)
            members.append((sig, {**options, "group_id": group_id, "group_index": index}))
        return group_id, members

    def apply_async(
        self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None, **options: Any
    ) -> GroupResult:
        """Send every member (plain task calls in one broker round trip); return their handles."""
        options = {**{k: v for k, v in self.options.items() if k != "task_id"}, **options}
        app = self.app
        if app.conf.task_always_eager:
            return self.apply(args, kwargs, **options)
        group_id, members = self._members(args, kwargs, options)
        result = GroupResult(group_id, app=app)
        batch: list[Outbound] = []
        handles: list[AsyncResult | None] = []
        for sig, opts in members:
            if type(sig) is Signature:
                batch.append(_build(app, sig, opts))
                handles.append(None)
            else:
                handles.append(sig.apply_async(**opts))
        if batch:
            app.producer.publish(batch)
        built = iter(batch)
        for handle in handles:
            if handle is None:
                message, _ = next(built)
                result.append(AsyncResult(message.id, app.backend, message.task, app=app))
            else:
                result.append(handle)
        return result

    def apply(
        self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None, **options: Any
    ) -> GroupResult:
        """Run every member here, in order; return their results."""
        options = {**{k: v for k, v in self.options.items() if k != "task_id"}, **options}
        group_id, members = self._members(args, kwargs, options)
        result = GroupResult(group_id, app=self.app)
        for sig, opts in members:
            opts.pop("group_id", None)
            opts.pop("group_index", None)
            result.append(sig.apply(**opts))
        return result

    def __call__(self, *args: Any, **kwargs: Any) -> GroupResult:  # type: ignore[override]
        """Same as ``apply_async(args, kwargs)`` (Celery's)."""
        return self.apply_async(args, kwargs)

    def freeze(self, _id: str | None = None, **kwargs: Any) -> GroupResult:  # type: ignore[override]
        """Give the group its id and every member its task id; return the group's handle."""
        group_id = _id or self.options.get("task_id") or str(uuid.uuid4())
        self["options"]["task_id"] = group_id
        result = GroupResult(group_id, app=self.app)
        for index, member in enumerate(self.tasks):
            result.append(member.freeze(group_id=group_id, group_index=index))
        return result


#: How long a chord's counters live in the store when ``result_expires`` is not set (seconds).
CHORD_TTL = 86400.0


def chord_ttl(app: Celeriac) -> float:
    """How long a chord's counters and once-only keys live in the store."""
    expires = app.conf.result_expires
    seconds = expires.total_seconds() if hasattr(expires, "total_seconds") else expires
    return float(seconds) if seconds else CHORD_TTL


class chord(Signature):  # Celery's name
    """A group (the header) whose results, in order, are the first argument of one more task
    (the body), sent once every member succeeded. See ``docs/canvas.md`` ("Chords")."""

    def __init__(
        self,
        header: Any,
        body: Any = None,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        app: Celeriac | None = None,
        **options: Any,
    ) -> None:
        if isinstance(header, Mapping) and header.get("subtask_type") == "chord":
            Signature.__init__(self, header, app=app)
            data = self["kwargs"]
        else:
            Signature.__init__(
                self,
                "celery.chord",
                args or (),
                {"header": header, "body": body, "kwargs": dict(kwargs or {})},
                options,
                subtask_type="chord",
                app=app,
            )
            data = self["kwargs"]
        head = data["header"]
        head = group(head, app=app) if isinstance(head, Mapping) else group(list(head), app=app)
        data["header"] = head
        data["body"] = maybe_signature(data.get("body"), app=app)
        if self._app is None:
            self._app = head._app or (data["body"]._app if data["body"] is not None else None)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], app: Celeriac | None = None) -> chord:
        return cls(data, app=app)

    @property
    def header(self) -> group:
        return self["kwargs"]["header"]  # type: ignore[no-any-return]

    @property
    def body(self) -> Signature | None:
        return self["kwargs"]["body"]  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"chord({self.header!r}, {self.body!r})"

    def __len__(self) -> int:
        return len(self.header)

    def __bool__(self) -> bool:
        return True

    def clone(
        self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None, **opts: Any
    ) -> chord:
        body = self.body.clone() if self.body is not None else None
        copy = chord(self.header.clone(), body, app=self._app, **{**self.options, **opts})
        if (args or kwargs) and not self.immutable:  # partial arguments go to every member
            members = [member.clone(args, kwargs) for member in copy.header.tasks]
            copy["kwargs"]["header"] = group(members, app=self._app, **copy.header.options)
        return copy

    def link(self, callback: Mapping[str, Any]) -> Mapping[str, Any]:
        """Call ``callback`` with the body's return value."""
        return self._need_body().link(callback)

    def link_error(self, errback: Mapping[str, Any]) -> Mapping[str, Any]:
        """Run ``errback`` once when the body fails (a failed member fails the body)."""
        return self._need_body().link_error(errback)

    def _need_body(self) -> Signature:
        if self.body is None:
            raise ValueError("chord(header) has no body yet: call it with the body, chord(header)(body)")
        return self.body

    def _check(self, app: Celeriac) -> None:
        if app.backend is None:
            raise ConfigurationError(
                f"{self!r}: a chord needs a result backend to collect its header's results: "
                'set result_backend, e.g. result_backend = "redis://localhost:6379/0"'
            )
        app.store  # noqa: B018  (raises ConfigurationError when no store can be had)
        for member in self.header.tasks:
            if type(member) is not Signature:
                raise ConfigurationError(
                    f"{self!r}: a chord's header holds task signatures only here (found {member!r}); "
                    "make that member its own chord or chain outside the header"
                )

    def freeze(self, _id: str | None = None, **kwargs: Any) -> AsyncResult:
        """Give the header its group id, every member and the body its task id; return the
        body's handle (its ``parent`` the header's GroupResult)."""
        body = self._need_body()
        root_id = kwargs.get("root_id") or self.options.get("root_id")
        group_id = self.header.options.get("task_id") or str(uuid.uuid4())
        header = self.header.freeze(group_id)
        for member in self.header.tasks:
            if root_id:
                member.set(root_id=root_id)
        if isinstance(body, chain | chord | group):
            if root_id:
                body.set(root_id=root_id)
            result = body.freeze(_id)
        else:
            result = body.freeze(_id, root_id=root_id)
        if _id:
            self["options"]["task_id"] = _id
        result.parent = header
        return result

    def __call__(self, body: Any = None, **options: Any) -> Any:  # type: ignore[override]
        """``chord(header)(body)``: send it with ``body``; ``chord(header, body)()``: send it."""
        if body is not None and isinstance(body, Mapping) and "task" in body:
            return chord(self.header, body, app=self._app, **{**self.options, **options}).apply_async()
        return self.apply_async((body,) if body is not None else None, **options)

    def apply_async(
        self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None, **options: Any
    ) -> AsyncResult:
        """Send every header member with the body in its embed's ``chord`` (Celery's layout);
        return the body's handle. Eager (``task_always_eager``): run it here."""
        options = {**self.options, **options}
        app = self.app
        if app.conf.task_always_eager:
            return self.apply(args, kwargs, **options)
        self._check(app)
        work = self.clone(args, kwargs)
        options.pop("chain", None)
        body_id = options.pop("task_id", None)
        root_id = options.pop("root_id", None)
        parent_id = options.pop("parent_id", None)
        for errback in _as_sigs(options.pop("link_error", None)):
            work._need_body().link_error(errback)
        for callback in _as_sigs(options.pop("link", None)):
            work._need_body().link(callback)
        if root_id:
            work.set(root_id=root_id)
        result = work.freeze(body_id, root_id=root_id)
        body = plain(work.body)
        body["chord_size"] = len(work.header)
        header = work.header
        header_options = {k: v for k, v in options.items() if k not in ("group_id", "group_index")}
        if parent_id:
            header_options["parent_id"] = parent_id
        if root_id:
            header_options["root_id"] = root_id
        header.apply_async(task_id=header.options["task_id"], chord=body, **header_options)
        return result

    def apply(
        self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None, **options: Any
    ) -> AsyncResult:
        """Run the header here, then the body with its results (in order); a failed member makes
        the body's result a FAILURE with ChordError (its errbacks run once)."""
        from celeriac.results.result import EagerResult

        work = self.clone(args, kwargs)
        body = work._need_body()
        for key in ("task_id", "chain", "root_id", "parent_id", "group_id", "group_index", "chord"):
            options.pop(key, None)
        header = work.header.apply(**options)
        failed = [(index, r) for index, r in enumerate(header.results) if not r.successful()]
        if failed:
            index, member = failed[0]
            exc = ChordError(f"Dependency {member.id} raised {member.result!r} (chord member {index})")
            body_id = body.options.get("task_id") or str(uuid.uuid4())
            for errback in _as_sigs(body.options.get("link_error")):
                errback.apply_async((body_id,))
            result: AsyncResult = EagerResult(body_id, FAILURE, exc, None, str(body.task))
        else:
            result = body.apply(([r.get() for r in header.results],))
        result.parent = header
        return result


def _as_sigs(value: Any) -> list[Signature]:
    if value is None:
        return []
    items = [value] if isinstance(value, Mapping) else list(value)
    return [sig for sig in (maybe_signature(item) for item in items) if sig is not None]


def _build(app: Celeriac, sig: Signature, options: Mapping[str, Any]) -> Outbound:
    """The message a send of ``sig`` with ``options`` would publish (through the producer)."""
    args, kwargs, merged = sig._merge(None, None, options)
    task_id = merged.pop("task_id", None)
    task = app.tasks.get(str(sig.task))
    if task is not None:
        task._check_arguments(args, kwargs)
    return app.producer.build(str(sig.task), args, kwargs, task_id, task, **merged)


SIGNATURE_TYPES["chain"] = chain
SIGNATURE_TYPES["group"] = group
SIGNATURE_TYPES["chord"] = chord
