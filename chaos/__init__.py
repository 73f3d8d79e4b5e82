"""Fault injection for celeriac: private brokers that can be killed, and a proxy that breaks connections."""
