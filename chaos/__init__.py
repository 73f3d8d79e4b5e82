"""Fault injection for celeriac: real workers, real brokers, injected faults, an independent ledger."""
