"""The result-backend contract on SQLite: backends on one file are separate connections."""

from __future__ import annotations

import pytest

from celeriac.results import sqlite
from celeriac.results.sqlite import SQLiteResultBackend
from tests.contract.results_contract import ResultBackendContract


class TestSQLiteResultBackend(ResultBackendContract):
    clock_module = sqlite

    @pytest.fixture(autouse=True)
    def _url(self, tmp_path):
        self.url = f"sqlite:///{tmp_path / 'results.db'}"

    def make_backend(self, expires: float | None) -> SQLiteResultBackend:
        return SQLiteResultBackend(self.url, expires=expires)
