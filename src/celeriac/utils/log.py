"""Celery's ``celery.utils.log`` path: ``get_task_logger`` and ``get_logger``.

Loggers keep the caller's name (``proj.tasks``); only their parent changes, as in
Celery: a module logger whose parent would be the root logger hangs under
``celeriac``, a task logger under ``celeriac.task``. Records still reach the
worker's handler, and a level or handler set on ``celeriac.task`` applies to every
task module at once. The worker writes them with ``worker_task_log_format``
(Celery's default: the running task's ``task_name[task_id]`` before the message),
other loggers with ``worker_log_format``.
"""

from __future__ import annotations

import logging

#: Parent of every logger :func:`get_logger` hands out.
base_logger = logging.getLogger("celeriac")
#: Parent of every logger :func:`get_task_logger` hands out.
task_logger = logging.getLogger("celeriac.task")

_RESERVED = frozenset({base_logger.name, task_logger.name})


def _under(parent: logging.Logger, logger: logging.Logger) -> logging.Logger:
    if logger.parent is logging.root and logger is not parent:
        logger.parent = parent
    return logger


def get_logger(name: str) -> logging.Logger:
    """The logger ``name``, under the ``celeriac`` logger (Celery's ``get_logger``)."""
    logger = logging.getLogger(name)
    if logger in (base_logger, task_logger):
        return logger
    return _under(base_logger, logger)


def get_task_logger(name: str) -> logging.Logger:
    """The logger for a task module (usually ``__name__``), under ``celeriac.task``.

    Raises RuntimeError for ``celeriac`` and ``celeriac.task`` themselves, as Celery
    does for its own two names.
    """
    if name in _RESERVED:
        raise RuntimeError(f"logger name {name!r} is reserved: pass your module's name (__name__)")
    return _under(task_logger, logging.getLogger(name))


__all__ = ["base_logger", "get_logger", "get_task_logger", "task_logger"]
