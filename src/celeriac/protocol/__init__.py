"""Layer 1: task messages, content types and validation. Knows nothing of brokers."""

from celeriac.protocol.message import PERSISTENT, TRANSIENT, Envelope, TaskMessage, encode
from celeriac.protocol.validate import InvalidMessage, decode

__all__ = ["PERSISTENT", "TRANSIENT", "Envelope", "InvalidMessage", "TaskMessage", "decode", "encode"]
