"""The store contract on SQLite: a second handle is a second connection to the same file."""

from __future__ import annotations

import pytest

from celeriac.store.base import Store
from celeriac.store.sqlite import SQLiteStore
from tests.contract.store_contract import FakeClock, StoreContract


class TestSQLiteStore(StoreContract):
    @pytest.fixture(autouse=True)
    def _url(self, tmp_path):
        self.url = f"sqlite:///{tmp_path / 'celeriac.db'}"

    def make_store(self, clock: FakeClock | None) -> SQLiteStore:
        assert clock is not None
        return SQLiteStore(self.url, clock=clock)

    def make_peer(self, store: Store) -> Store:
        return SQLiteStore(self.url, clock=self.clock)
