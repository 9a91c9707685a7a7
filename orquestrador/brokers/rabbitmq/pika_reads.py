"""AMQP properties pika cannot decode end the message, not the connection.

pika decodes a message's properties while it parses the frames of the whole connection. Some
values any AMQP client can publish make that decoding raise: a NaN or infinite double in a header
(pika turns doubles into ints), a header timestamp past the year 9999, a table nested past
Python's recursion limit. The exception would close the connection, RabbitMQ would hand the
message back to the next connection, and the queue would be blocked for good. This module wraps
``BasicProperties.decode``: when it fails, the properties are decoded again without the header
table (its length is on the wire, so it can be skipped) and marked unreadable, so the delivery
is dead-lettered with the reason and the connection carries on. Applied when the RabbitMQ
adapter opens a connection (``prepare_pika``, idempotent).
"""

from __future__ import annotations

import logging
import struct
from typing import Any

from pika import spec

log = logging.getLogger(__name__)

_MARK = "_orq_unreadable"


def unreadable(props: Any) -> str | None:
    """Why pika could not decode these properties, or None if it could."""
    reason = getattr(props, _MARK, None)
    return reason if isinstance(reason, str) else None


def install() -> bool:
    """Wrap ``BasicProperties.decode`` (idempotent); True if it applied."""
    decode = spec.BasicProperties.decode
    if getattr(decode, "_orq_guarded", False):
        return True

    def guarded(self: spec.BasicProperties, encoded: bytes, offset: int = 0) -> spec.BasicProperties:
        try:
            return decode(self, encoded, offset)
        except Exception as exc:  # RecursionError too: any failure is this message's, not ours
            reason = f"AMQP properties unreadable ({type(exc).__name__}): headers dropped"
        try:
            decode(self, _without_headers(encoded, offset), 0)
        except Exception:  # nothing salvageable: every property is unset
            for name in _PROPERTIES:
                setattr(self, name, None)
            reason = reason.replace("headers dropped", "properties dropped")
        setattr(self, _MARK, reason)
        log.debug("%s", reason)
        return self

    guarded._orq_guarded = True  # type: ignore[attr-defined]
    spec.BasicProperties.decode = guarded  # type: ignore[method-assign,assignment]
    return True


_PROPERTIES = ("content_type", "content_encoding", "headers", "delivery_mode", "priority", "correlation_id",
               "reply_to", "expiration", "message_id", "timestamp", "type", "user_id", "app_id",
               "cluster_id")  # fmt: skip


def _without_headers(encoded: bytes, offset: int) -> bytes:
    """The same properties with the header table cut out and its flag cleared."""
    flags = struct.unpack_from(">H", encoded, offset)[0]
    at = offset + 2
    if flags & 1:  # a second flag word: BasicProperties never has one
        raise ValueError("unexpected property flags")
    for flag in (spec.BasicProperties.FLAG_CONTENT_TYPE, spec.BasicProperties.FLAG_CONTENT_ENCODING):
        if flags & flag:
            at += 1 + encoded[at]
    if not flags & spec.BasicProperties.FLAG_HEADERS:
        raise ValueError("the failure was not in the headers")
    length = struct.unpack_from(">I", encoded, at)[0]
    cleared = struct.pack(">H", flags & ~spec.BasicProperties.FLAG_HEADERS)
    return cleared + encoded[offset + 2 : at] + encoded[at + 4 + length :]
