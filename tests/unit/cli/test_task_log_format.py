"""worker_task_log_format: task loggers write Celery's task lines, with the running task's name
and id, to the same place as the worker's own lines."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from celeriac.cli.common import TASK_LOGGER, setup_logging
from celeriac.config import SETTINGS_BY_NAME
from celeriac.context import Request, pop_request, push_request
from celeriac.utils.log import get_task_logger


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root, task = logging.getLogger(), logging.getLogger(TASK_LOGGER)
    saved = (list(root.handlers), root.level, list(task.handlers), task.propagate)
    yield
    for handler in root.handlers:
        if handler not in saved[0]:
            handler.close()
    root.handlers[:], task.handlers[:] = saved[0], saved[2]
    root.setLevel(saved[1])
    task.propagate = saved[3]


def test_task_lines_carry_the_running_task_and_worker_lines_keep_their_format(
    restored_logging, tmp_path: Path
):
    logfile = tmp_path / "worker.log"
    setup_logging(
        "INFO", "W %(name)s: %(message)s", str(logfile), "T %(task_name)s[%(task_id)s]: %(message)s"
    )
    token = push_request(Request(id="abc-123", task="proj.add"))
    try:
        get_task_logger("proj.tasks").info("adding 2 + 3")
        logging.getLogger("proj.other").info("a plain module logger")
    finally:
        pop_request(token)
    get_task_logger("proj.tasks").warning("between tasks")
    logging.getLogger("celeriac.worker").info("ready")
    for handler in logging.getLogger().handlers + logging.getLogger(TASK_LOGGER).handlers:
        handler.flush()
    assert logfile.read_text().splitlines() == [
        "T proj.add[abc-123]: adding 2 + 3",
        "W proj.other: a plain module logger",
        "T ???[???]: between tasks",
        "W celeriac.worker: ready",
    ]


def test_the_default_is_celerys_task_format():
    default = SETTINGS_BY_NAME["worker_task_log_format"].default
    assert default == "[%(asctime)s: %(levelname)s/%(processName)s] %(task_name)s[%(task_id)s]: %(message)s"
