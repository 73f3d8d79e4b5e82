from celeriac.brokers.base import BrokerOptions
from celeriac.brokers.memory import MemoryBroker
from tests.contract.broker_contract import BrokerContract


class TestMemoryBroker(BrokerContract):
    def make_broker(self, options: BrokerOptions) -> MemoryBroker:
        return MemoryBroker("memory://", options)
