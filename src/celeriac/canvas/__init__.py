"""Canvas: work made of several task messages, with Celery's names and wire form.

``canvas/signature.py`` describes one call as data (:class:`Signature`, ``task.s()``);
``canvas/primitives.py`` builds ``chain`` and ``group`` into messages; ``canvas/chunks.py``
is ``Task.chunks``. Each primitive only builds messages and hands them to the producer
(``celeriac.sending``); what runs after a task (callbacks, errbacks, the next step of a
chain) is ``canvas/hooks.py``, which every app adds to its worker hooks.
``canvas/builtins.py`` registers the builtin ``celery.*`` tasks that Celery producers
send, so every app (and so every worker) has them.

``chord`` (also ``group | task``) is built in ``canvas/primitives.py``; its members are
counted and its body sent once in ``canvas/hooks.py``.
"""

from celeriac import _compat
from celeriac.canvas.primitives import chain, chord, group
from celeriac.canvas.signature import Signature, maybe_signature, signature, subtask

__getattr__ = _compat.missing_names(__name__)

__all__ = ["Signature", "chain", "chord", "group", "maybe_signature", "signature", "subtask"]
