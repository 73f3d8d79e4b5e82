"""Interoperability with stock Celery on a shared Redis."""
