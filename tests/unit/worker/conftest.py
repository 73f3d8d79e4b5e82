"""Fixtures of the worker unit tests."""

from __future__ import annotations

import os

import pytest

from celeriac.worker.master import Master
from celeriac.worker.options import WorkerOptions


@pytest.fixture
def master(app):
    """A master of ``app`` that is never run: its children are driven by hand."""
    master = Master(app, WorkerOptions.from_app(app))
    yield master
    for fd in (master.control.wake_r, master.control.wake_w):
        os.close(fd)
