"""The RabbitMQ broker (``amqp://``, ``amqps://``, ``pyamqp://``), laid out as Celery lays it out.

:mod:`~celeriac.brokers.amqp.broker` delivers and settles;
:mod:`~celeriac.brokers.amqp.wire` has the message format and celeriac's headers,
:mod:`~celeriac.brokers.amqp.declarations` the declarations and their conflicts,
:mod:`~celeriac.brokers.amqp.sidequeues` the dead letters, heartbeats and queue registry,
:mod:`~celeriac.brokers.amqp.connection` the connections, the producer channel pool and
the translation of py-amqp errors into celeriac's. Import the module you need: this
package imports nothing.
"""
