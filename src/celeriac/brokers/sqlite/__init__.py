"""The SQLite broker, the embedded default (``sqlite:///celeriac.db``).

:mod:`~celeriac.brokers.sqlite.broker` is the broker (schema and lease rules at its
top); :mod:`~celeriac.brokers.sqlite.file` opens a database file with retrying
transactions, shared with the SQLite result backend. Import the module you need:
this package imports nothing, so the result backend does not load the broker.
"""
