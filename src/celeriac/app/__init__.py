"""``Celeriac`` (also importable as ``Celery``): settings, the task registry, and what they build.

One app object holds the settings, the registered tasks (the builtin ``celery.*``
ones from ``canvas/builtins.py`` included), and, created on first use and rebuilt
when their settings change: the broker, the result backend, the store
(``store/``), the router and the producer (``sending.py``), through which every
send leaves. The worker reads the registry and the hooks (``hooks.py``).
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cached_property
from typing import Any, overload

from celeriac import _state, config, fixups, signals
from celeriac.app.autodiscover import Packages, related_modules
from celeriac.brokers import Broker, BrokerOptions, from_url
from celeriac.canvas.builtins import BUILTIN_TASKS, register_builtins
from celeriac.errors import ConfigurationError, NotRegisteredError
from celeriac.hooks import HookChain, Hooks
from celeriac.protocol.entities import Queue
from celeriac.results import ResultBackend, backend_from_url
from celeriac.results.result import AsyncResult
from celeriac.routing import Router
from celeriac.sending import Outbound, Producer
from celeriac.store import Store, select_store
from celeriac.task import Task, make_task

logger = logging.getLogger("celeriac.app")

#: Settings whose change means a new broker / result backend / router.
_BROKER_SETTINGS = frozenset(
    {
        "broker_url",
        "broker_transport_options",
        "broker_lease_timeout",
        "task_delivery_limit",
        "broker_pool_limit",
        "broker_pool_timeout",
        "broker_connection_timeout",
        "task_publish_retry",
        "task_publish_retry_policy",
    }
)
_BACKEND_SETTINGS = frozenset(
    {
        "result_backend",
        "result_backend_transport_options",
        "result_serializer",
        "result_accept_content",
        "accept_content",
        "result_expires",
    }
)
_ROUTER_SETTINGS = frozenset(
    {
        "task_queues",
        "task_routes",
        "task_default_queue",
        "task_default_delivery_mode",
        "task_default_priority",
        "task_queue_max_priority",
        "task_create_missing_queues",
    }
)


class Celeriac:
    """A celeriac application: settings, tasks, and the way to send them."""

    def __init__(
        self,
        main: str | None = None,
        *,
        broker: str | None = None,
        backend: str | None = None,
        include: Sequence[str] | None = None,
        config_source: Any = None,
        set_as_current: bool = True,
        **settings: Any,
    ) -> None:
        self.main = main
        self.tasks: dict[str, Task] = {}
        self.conf = config.Settings(listener=self._reset)
        if config_source is not None:
            self.config_from_object(config_source)
        # Celery reads its old names (CELERY_ALWAYS_EAGER=...) here, without refusing a mix.
        explicit = config.rename_old_names(settings, "Celeriac()")
        if broker is not None:
            explicit["broker_url"] = broker
        if backend is not None:
            explicit["result_backend"] = backend
        if include is not None:
            explicit["include"] = include
        if explicit:
            self.conf.update(explicit)
            self.conf.apply_environment()
        register_builtins(self)
        self._extra_hooks: list[Hooks] = []
        #: framework fix-ups: Django's when DJANGO_SETTINGS_MODULE is set (celeriac.fixups)
        self._fixups = fixups.from_environment()
        for fixup in self._fixups:
            hooks = fixup.hooks()
            if hooks is not None:
                self._extra_hooks.append(hooks)
        #: autodiscover_tasks() calls waiting for the task modules to be imported
        self._discoveries: list[tuple[Packages | None, str | None]] = []
        self.origin = f"gen{os.getpid()}@{socket.gethostname()}"
        if set_as_current:
            _state.set_default_app(self)

    def __repr__(self) -> str:
        return f"<Celeriac {self.main or '__main__'}>"

    # -- configuration ----------------------------------------------------------------------

    def config_from_object(self, obj: Any, namespace: str | None = None, silent: bool = False) -> None:
        """Load settings from a module, import path, class or mapping.

        As in Celery, they are the layer under the app's own settings: what the constructor was
        given and what is set in code (``app.conf.update``, before or after) win; the
        environment wins over all of them. ``silent=True`` ignores a module that cannot be
        imported, as in Celery; a configuration that loads but is wrong still raises.
        """
        self.conf.load(config.from_object(obj, namespace, silent=silent))
        self.conf.apply_environment()

    def _reset(self, changed: frozenset[str]) -> None:
        """Settings changed: rebuild what depends on them (and only that) on next use.

        An in-memory broker or backend is kept unless its own settings change, so
        queued messages and stored results survive e.g. a worker option override.
        """
        stale: set[str] = set()
        if changed & _BROKER_SETTINGS:
            stale |= {"broker", "backend", "hooks", "producer", "store"}
        if changed & _BACKEND_SETTINGS:
            stale |= {"backend", "hooks", "store"}
        if changed & _ROUTER_SETTINGS:
            stale |= {"router", "producer"}
        for name in stale:
            self.__dict__.pop(name, None)
        if "task_annotations" in changed:
            for task in self.tasks.values():
                self._annotate(task)

    def _annotate(self, task: Task) -> None:
        """Set the options ``task_annotations`` gives ``task`` (checked when the setting was set)."""
        for option, value in config.annotations_for(self.conf.task_annotations, task.name).items():
            setattr(type(task), option, value)

    @cached_property
    def broker(self) -> Broker:
        """The broker named by ``broker_url`` (connected on first use)."""
        options = BrokerOptions(
            lease_seconds=self.conf.broker_lease_timeout,
            delivery_limit=self.conf.task_delivery_limit,
            transport_options=dict(self.conf.broker_transport_options),
            pool_limit=self.conf.broker_pool_limit,
            pool_timeout=self.conf.broker_pool_timeout,
            connect_timeout=self.conf.broker_connection_timeout,
            publish_retry=self.conf.task_publish_retry,
            publish_retry_policy=dict(self.conf.task_publish_retry_policy),
        )
        return from_url(self.conf.broker_url, options)

    @cached_property
    def backend(self) -> ResultBackend | None:
        """The result backend: ``result_backend``, else the broker's SQLite file, else None."""
        url = self.conf.result_backend
        if url is None:
            scheme = self.conf.broker_url.split("://", 1)[0]
            url = self.conf.broker_url if scheme in ("sqlite", "memory") else None
        if url is None:
            return None
        return backend_from_url(
            url,
            self.conf.result_serializer,
            self.conf.result_accept_content or self.conf.accept_content,
            self.conf.result_expires,
            self.conf.result_backend_transport_options,
        )

    @cached_property
    def store(self) -> Store:
        """The key-value store that chords, revoke, rate limits and beat keep their state in.

        At ``result_backend`` when set, else in the broker's SQLite file or Redis server;
        a RabbitMQ broker without a result backend raises ConfigurationError naming
        ``result_backend`` (see ``docs/store.md``).
        """
        return select_store(
            self.conf.result_backend,
            self.conf.broker_url,
            backend_transport_options=self.conf.result_backend_transport_options,
            broker_transport_options=self.conf.broker_transport_options,
        )

    @cached_property
    def router(self) -> Router:
        """Routes built from ``task_queues`` and ``task_routes``."""
        return Router(
            self.conf.task_queues,
            self.conf.task_routes,
            self.conf.task_default_queue,
            self.conf.task_default_delivery_mode,
            self.conf.task_default_priority,
            self.conf.task_create_missing_queues,
            self.conf.task_queue_max_priority,
        )

    @cached_property
    def hooks(self) -> HookChain:
        """Hooks the worker runs: Celery's signals, results (when a backend is configured), the
        canvas (callbacks, chain steps, errbacks), then added ones."""
        from celeriac.canvas.hooks import CanvasHooks
        from celeriac.results.hooks import ResultHooks
        from celeriac.signals.hooks import SignalHooks

        chain = HookChain([SignalHooks(self)])
        if self.backend is not None:
            chain.add(ResultHooks(self))
        chain.add(CanvasHooks(self))
        for hooks in self._extra_hooks:
            chain.add(hooks)
        return chain

    def add_hooks(self, hooks: Hooks) -> None:
        """Register lifecycle hooks for workers of this app."""
        self._extra_hooks.append(hooks)
        self.__dict__.pop("hooks", None)

    def import_task_modules(self) -> None:
        """Worker start: send ``import_modules`` (as Celery's loader does), make the fix-ups'
        framework ready (``django.setup()``), then import the packages' task modules
        ``autodiscover_tasks`` asked for and the modules named in ``include`` and ``imports``."""
        signals.import_modules.send(sender=self)
        for fixup in self._fixups:
            fixup.setup()
        for packages, related_name in self._discoveries:
            self._discover(packages, related_name)
        for module in (*self.conf.include, *self.conf.imports):
            try:
                importlib.import_module(module)
            except ImportError as exc:
                raise ConfigurationError(
                    f"cannot import task module {module!r} (from include/imports): {exc}"
                ) from exc

    def autodiscover_tasks(
        self, packages: Packages | None = None, related_name: str | None = "tasks", force: bool = False
    ) -> None:
        """Import ``<package>.<related_name>`` of each package that has one, when the worker
        imports the task modules (Celery's lazy autodiscovery), or now with ``force=True``.

        ``packages``: package names, or a callable that returns them, called at discovery
        (``lambda: settings.INSTALLED_APPS``). None: Django's installed apps, which needs
        ``DJANGO_SETTINGS_MODULE`` set when the app is created. ``related_name`` None imports
        the packages themselves.
        """
        if packages is None and not self._fixups:
            raise ConfigurationError(
                "autodiscover_tasks() without packages searches Django's installed apps, and there are "
                "no Django settings (DJANGO_SETTINGS_MODULE is not set, or Django is not installed): "
                "set it before creating the app (os.environ.setdefault('DJANGO_SETTINGS_MODULE', "
                "'proj.settings')), or name the packages: app.autodiscover_tasks(['app1', 'app2'])"
            )
        if force:
            self._discover(packages, related_name)
        else:
            self._discoveries.append((packages, related_name))

    def _discover(self, packages: Packages | None, related_name: str | None) -> None:
        if packages is None:
            names = [name for fixup in self._fixups for name in fixup.task_packages() or ()]
        else:
            names = packages() if callable(packages) else packages
        if isinstance(names, str):
            raise ConfigurationError(
                f"autodiscover_tasks() takes a list of package names, not one string: [{names!r}]"
            )
        modules = related_modules(names, related_name)
        logger.debug("autodiscover_tasks imported %s", ", ".join(m.__name__ for m in modules) or "nothing")

    # -- tasks ------------------------------------------------------------------------------

    def gen_task_name(self, fun: Callable[..., Any]) -> str:
        """``module.function``; functions in ``__main__`` take the app's main name."""
        module = fun.__module__
        if module == "__main__" and self.main:
            module = self.main
        return f"{module}.{fun.__name__}"

    @overload
    def task(self, fun: Callable[..., Any]) -> Task: ...
    @overload
    def task(
        self, *, name: str | None = ..., bind: bool = ..., base: type[Task] | None = ..., **options: Any
    ) -> Callable[[Callable[..., Any]], Task]: ...

    def task(self, fun: Callable[..., Any] | None = None, **options: Any) -> Any:
        """Decorator: register a function as a task (``@app.task`` or ``@app.task(...)``)."""

        def decorate(function: Callable[..., Any]) -> Task:
            return self.register(function, **options)

        return decorate(fun) if fun is not None else decorate

    def register(
        self,
        fun: Callable[..., Any],
        name: str | None = None,
        bind: bool = False,
        base: type[Task] | None = None,
        **options: Any,
    ) -> Task:
        """Register ``fun`` as a task and return it.

        ``rate_limit`` (as an option or on a base class) is refused, since rate limits are not
        implemented yet; ``task_annotations`` apply over the options given here.
        """
        unknown = set(options) - Task.OPTIONS - {"rate_limit"}
        if unknown:
            bad = sorted(unknown)[0]
            raise ConfigurationError(
                f"@task option {bad!r} is not known{config.did_you_mean(bad, Task.OPTIONS)}"
            )
        task = make_task(self, fun, name or self.gen_task_name(fun), base or Task, bind, options)
        self._annotate(task)
        self.tasks[task.name] = task
        return task

    def task_names(self, builtins: bool = False) -> list[str]:
        """Names of the registered tasks, sorted; the builtin ``celery.*`` ones only if asked."""
        return sorted(name for name in self.tasks if builtins or name not in BUILTIN_TASKS)

    def get_task(self, name: str) -> Task:
        """The registered task ``name``; NotRegisteredError names the known ones."""
        try:
            return self.tasks[name]
        except KeyError:
            known = ", ".join(self.task_names()[:20]) or "none"
            raise NotRegisteredError(f"task {name!r} is not registered (known: {known})") from None

    # -- sending ----------------------------------------------------------------------------

    @cached_property
    def producer(self) -> Producer:
        """The producer every send goes through (``celeriac.sending``)."""
        return Producer(self.conf, lambda: self.router, lambda: self.broker, self.origin)

    def build_message(
        self,
        name: str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        task_id: str | None = None,
        task: Task | None = None,
        route_name: str | None = None,
        **options: Any,
    ) -> Outbound:
        """The message and route ``send_task`` would publish (validated); see :meth:`Producer.build`."""
        return self.producer.build(name, args, kwargs, task_id, task, route_name, **options)

    def send_task(
        self,
        name: str,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        task_id: str | None = None,
        task: Task | None = None,
        route_name: str | None = None,
        **options: Any,
    ) -> AsyncResult:
        """Send a task by name (it need not be registered here) and return its result handle."""
        backend = self.backend  # a backend that cannot be built fails before anything is sent
        message = self.producer.send(name, args, kwargs, task_id, task, route_name, **options)
        return AsyncResult(message.id, backend, name)

    def send_many(
        self,
        name: str,
        calls: Iterable[Sequence[Any]],
        task: Task | None = None,
        route_name: str | None = None,
        **options: Any,
    ) -> list[AsyncResult]:
        """Send one task per argument tuple, in one broker round trip."""
        producer, backend = self.producer, self.backend
        batch = [producer.build(name, args, None, None, task, route_name, **options) for args in calls]
        producer.publish(batch)
        return [AsyncResult(message.id, backend, name) for message, _ in batch]

    def AsyncResult(
        self,
        task_id: str,
        backend: ResultBackend | None = None,
        task_name: str | None = None,
        parent: AsyncResult | None = None,
    ) -> AsyncResult:
        """A handle on the result of ``task_id``, read from this app's result backend."""
        return AsyncResult(task_id, backend, task_name, app=self, parent=parent)

    def queues_for(self, names: Sequence[str] | None) -> list[Queue]:
        """The queues a worker consumes: ``names`` (declared or created), or every declared queue."""
        if not names:
            return list(self.router.queues.values())
        return [self.router.queue(name) for name in names]

    # -- the command line, from a script ----------------------------------------------------

    def start(self, argv: Sequence[str] | None = None) -> int:
        """Run the ``celeriac`` command line with this app, as Celery's ``app.start()``:
        a script ending in ``app.start()`` runs as ``python tasks.py worker -l INFO``.

        ``argv`` is the command line without the program name (default: ``sys.argv[1:]``;
        Celery 5 passes the script's name too, and fails on it). ``-A`` may still name
        another app. Returns the exit code; a usage error exits, as argparse does.
        """
        from celeriac.cli.main import main

        if argv is None:
            argv = sys.argv[1:]
        elif argv and argv[0] == sys.argv[0]:  # app.start(sys.argv)
            argv = argv[1:]
        return main(list(argv), app=self)

    def worker_main(self, argv: Sequence[str] | None = None) -> int:
        """Run ``celeriac worker`` with this app, as Celery's ``app.worker_main()``:
        ``app.worker_main(["worker", "-l", "INFO"])``, or with ``argv`` (default
        ``sys.argv[1:]``) given without the ``worker`` command."""
        args = list(sys.argv[1:] if argv is None else argv)
        if args and args[0] == sys.argv[0]:
            args = args[1:]
        if "worker" not in args:
            args.insert(0, "worker")
        return self.start(args)

    def close(self) -> None:
        """Close broker and backend connections opened by this process."""
        if "broker" in self.__dict__:
            self.broker.close()
        if "backend" in self.__dict__ and self.backend is not None:
            self.backend.close()
        if "store" in self.__dict__:
            self.store.close()

    # Last in the class body, so that ``Task`` in the annotations above means the class.
    @cached_property
    def Task(self) -> type[Task]:
        """This app's task base class (Celery's ``app.Task``).

        Subclass it for behaviour several tasks share (handlers such as ``on_failure``,
        option defaults) and pass the subclass as ``base=`` to ``@app.task``; its ``app``
        is this app.
        """
        return type("Task", (Task,), {"app": self, "__module__": Task.__module__})


Celery = Celeriac
