"""The store contract on the in-process store."""

from __future__ import annotations

from celeriac.store.memory import MemoryStore
from tests.contract.store_contract import FakeClock, StoreContract


class TestMemoryStore(StoreContract):
    def make_store(self, clock: FakeClock | None) -> MemoryStore:
        assert clock is not None
        return MemoryStore(clock=clock)
