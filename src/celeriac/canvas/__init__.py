"""Canvas: work made of several task messages (``Task.chunks`` today).

Each primitive only builds messages and hands them to the producer
(``celeriac.sending``); ``canvas/builtins.py`` registers the builtin ``celery.*``
tasks that Celery producers send, so every app (and so every worker) has them.
"""
