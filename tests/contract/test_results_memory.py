"""The result-backend contract on the in-process backend."""

from __future__ import annotations

from celeriac.results import memory
from celeriac.results.memory import MemoryResultBackend
from tests.contract.results_contract import ResultBackendContract


class TestMemoryResultBackend(ResultBackendContract):
    clock_module = memory
    shared_by_url = False

    def make_backend(self, expires: float | None) -> MemoryResultBackend:
        return MemoryResultBackend("memory://", expires=expires)
