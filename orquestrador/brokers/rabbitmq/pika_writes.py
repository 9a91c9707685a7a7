"""One ``send()`` per writable event instead of one per AMQP frame, for pika's asyncio transport.

pika buffers every outgoing frame (a publish is three: method, header, body; an ack is one) and,
once the socket is writable, sends them one system call each. A worker finishing a batch of
jobs queues dozens of frames at once; joining what is buffered into one ``send()`` was the
largest single cost left in the RabbitMQ worker. The bytes and their order are unchanged; only
the number of system calls drops. Applied when the RabbitMQ adapter opens a connection
(``prepare_pika``, idempotent); if a pika release renames what it relies on, it does nothing and
pika behaves as it always did.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

_MAX_JOIN = 256 * 1024  # bytes joined per send: large bodies are sent as they are


def install() -> bool:
    """Patch pika's transport base class; True if it applied (idempotent)."""
    try:
        from pika.adapters.utils import io_services_utils as io
    except ImportError:  # pragma: no cover - pika always ships it
        return False
    base = getattr(io, "_AsyncTransportBase", None)
    produce = getattr(base, "_produce", None)
    if base is None or produce is None:
        log.debug("pika's transport changed; frames are sent one by one")
        return False
    if getattr(produce, "_orq_coalesced", False):
        return True

    def _produce(self: Any) -> None:
        buffers = getattr(self, "_tx_buffers", None)
        if buffers is not None and len(buffers) > 1:
            joined: list[bytes] = []
            size = 0
            while buffers and size + len(buffers[0]) <= _MAX_JOIN:
                chunk = buffers.popleft()
                joined.append(chunk)
                size += len(chunk)
            if joined:
                buffers.appendleft(b"".join(joined))
        produce(self)

    _produce._orq_coalesced = True  # type: ignore[attr-defined]
    base._produce = _produce
    return True
