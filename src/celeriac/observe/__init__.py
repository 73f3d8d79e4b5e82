"""Layer 5: what the worker reports and what the monitor reads."""
