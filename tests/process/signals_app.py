"""An app whose task module connects receivers to Celery's signals, as an integration would.

Every receiver appends one JSON line to ``$PROC_SIGNALS`` (one ``O_APPEND`` write,
atomic between processes): the signal, the pid it ran in, its sender, and what
the test checks of its arguments. Without ``PROC_SIGNALS`` the receivers do
nothing (the test process imports this module too, for the producer side).

A ``setup_logging`` receiver configures logging itself, with a format of its own,
so the worker's log shows that celeriac left logging to it.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

from celeriac import Celeriac, Queue, Task, signals

app = Celeriac("signals_app")
app.conf.update(task_queues=(Queue("celery"),), worker_stats_interval=0.2)

#: The format the setup_logging receiver gives the root logger.
LOG_PREFIX = "SIGLOG"


def _describe(sender: Any) -> Any:
    if isinstance(sender, Task):
        return f"task:{sender.name}"
    if isinstance(sender, Celeriac):
        return f"app:{sender.main}"
    if sender is None or isinstance(sender, str):
        return sender
    hostname = getattr(sender, "hostname", None)
    return f"{type(sender).__name__}:{hostname}"


def record(signal: Any, sender: Any, **fields: Any) -> None:
    path = os.environ.get("PROC_SIGNALS")
    if not path:
        return
    line = {"signal": signal.name, "pid": os.getpid(), "sender": _describe(sender), **fields}
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(line, default=repr) + "\n").encode())
    finally:
        os.close(fd)


@app.task(name="signals.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="signals.fail")
def fail(label: str) -> None:
    raise ValueError(label)


@app.task(name="signals.flaky", bind=True)
def flaky(self: Task) -> str:
    if self.request.retries == 0:
        raise self.retry(exc=ConnectionError("first attempt"), countdown=0)
    return "retried"


@app.task(name="signals.boom")
def boom() -> str:
    return "fine"


# -- the worker program -----------------------------------------------------------------------


@signals.setup_logging.connect
def configure_logging(sender: Any, loglevel: int, format: str, **kwargs: Any) -> None:
    if os.environ.get("PROC_SIGNALS"):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(f"{LOG_PREFIX} %(levelname)s %(message)s"))
        logging.getLogger().handlers[:] = [handler]
        logging.getLogger().setLevel(loglevel)
    record(signals.setup_logging, sender, loglevel=loglevel, format=format)


@signals.import_modules.connect
def on_import_modules(sender: Any, **kwargs: Any) -> None:
    record(signals.import_modules, sender)


@signals.celeryd_init.connect
def on_celeryd_init(sender: Any, instance: Any, conf: Any, options: dict[str, Any], **kwargs: Any) -> None:
    record(
        signals.celeryd_init,
        sender,
        instance_hostname=instance.hostname,
        instance_app=instance.app is app,
        conf=conf is app.conf,
        concurrency=options.get("concurrency"),
    )


@signals.worker_init.connect
def on_worker_init(sender: Any, **kwargs: Any) -> None:
    record(signals.worker_init, sender, app=sender.app is app)


@signals.celeryd_after_setup.connect
def on_after_setup(sender: Any, instance: Any, conf: Any, **kwargs: Any) -> None:
    record(signals.celeryd_after_setup, sender, instance=_describe(instance))


@signals.worker_ready.connect
def on_worker_ready(sender: Any, **kwargs: Any) -> None:
    record(signals.worker_ready, sender)


@signals.worker_before_create_process.connect
def on_before_fork(sender: Any, **kwargs: Any) -> None:
    record(signals.worker_before_create_process, sender)


@signals.worker_process_init.connect
def on_process_init(sender: Any, **kwargs: Any) -> None:
    record(signals.worker_process_init, sender)


@signals.worker_process_shutdown.connect
def on_process_shutdown(sender: Any, pid: int, exitcode: int, **kwargs: Any) -> None:
    record(signals.worker_process_shutdown, sender, child=pid, exitcode=exitcode)


@signals.worker_shutting_down.connect
def on_shutting_down(sender: Any, sig: Any, how: str, exitcode: int, **kwargs: Any) -> None:
    record(signals.worker_shutting_down, sender, sig=sig, how=how, exitcode=exitcode)


@signals.worker_shutdown.connect
def on_worker_shutdown(sender: Any, **kwargs: Any) -> None:
    record(signals.worker_shutdown, sender)


# -- tasks ------------------------------------------------------------------------------------


@signals.before_task_publish.connect
def on_before_publish(sender: Any, headers: dict[str, Any], **kwargs: Any) -> None:
    headers["x-signal-test"] = "injected"
    record(signals.before_task_publish, sender, id=headers["id"], routing_key=kwargs["routing_key"])


@signals.after_task_publish.connect
def on_after_publish(sender: Any, headers: dict[str, Any], **kwargs: Any) -> None:
    record(signals.after_task_publish, sender, id=headers["id"])


@signals.task_prerun.connect
def on_prerun(sender: Any, task_id: str, task: Task, args: Any, kwargs: Any, **rest: Any) -> None:
    message = task.request.message
    record(
        signals.task_prerun,
        sender,
        id=task_id,
        task=task.name,
        args=list(args),
        kwargs=kwargs,
        request_id=task.request.id,
        header=None if message is None else message.extra_headers.get("x-signal-test"),
    )


@signals.task_prerun.connect(sender=boom)
def broken_receiver(**kwargs: Any) -> None:
    raise RuntimeError("receiver bug")


@signals.task_postrun.connect
def on_postrun(sender: Any, task_id: str, retval: Any, state: str, **kwargs: Any) -> None:
    record(signals.task_postrun, sender, id=task_id, state=state, retval=repr(retval))


@signals.task_success.connect
def on_success(sender: Any, result: Any, **kwargs: Any) -> None:
    record(signals.task_success, sender, result=result)


@signals.task_failure.connect
def on_failure(sender: Any, task_id: str, exception: BaseException, einfo: Any, **kwargs: Any) -> None:
    record(signals.task_failure, sender, id=task_id, exception=repr(exception), einfo=einfo.traceback)


@signals.task_retry.connect
def on_retry(sender: Any, request: Any, reason: Any, **kwargs: Any) -> None:
    record(signals.task_retry, sender, id=request.id, reason=repr(reason.exc))


@signals.task_revoked.connect
def on_revoked(sender: Any, request: Any, expired: bool, **kwargs: Any) -> None:
    record(signals.task_revoked, sender, id=request.id, expired=expired)


@signals.task_unknown.connect
def on_unknown(sender: Any, name: str, id: str, **kwargs: Any) -> None:
    record(signals.task_unknown, sender, name=name, id=id)
