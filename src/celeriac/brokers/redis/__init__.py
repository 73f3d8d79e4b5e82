"""The Redis broker (``redis://``, ``rediss://``, ``unix://``, ``sentinel://``), in kombu's layout.

:mod:`~celeriac.brokers.redis.broker` is the broker (its key layout at the top);
:mod:`~celeriac.brokers.redis.scripts` holds its Lua scripts and every key they touch;
:mod:`~celeriac.brokers.redis.connection` makes the measured connection pool, shared
with the Redis result backend and store; :mod:`~celeriac.brokers.redis.sentinel` reads
Redis Sentinel's URLs and options. Import the module you need: this package imports
nothing, so the result backend does not load the broker.
"""
