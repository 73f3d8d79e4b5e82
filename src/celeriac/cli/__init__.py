"""``celeriac``: the command line (layer 6). Parses arguments, loads the app, hands over.

``main`` builds the parser and runs a command; ``common`` holds what every command
shares (loading the app, logging, argument types, exit codes); the other modules are
one command group each: ``worker``, ``inspect`` (``inspect``/``status``, ``result``),
``queues`` (``purge``, ``deadletters``, ``call``), ``monitor`` (``monitor``, ``top``,
``status --watch``), ``munin`` and ``migrate`` (move a Celery project over). Command
modules import ``common`` and the layers below, never ``main``. The entry point is
:func:`celeriac.cli.main.main`.
"""
