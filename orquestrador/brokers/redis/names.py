"""Where a queue lives in Redis and how an entry is laid out (see the package docstring)."""

from __future__ import annotations

import json
from typing import Any

from redis.typing import EncodableT, FieldT

from orquestrador.brokers.base import validate_queue_name
from orquestrador.brokers.intake import DeliveryFields

GROUP = "workers"
QUEUES_KEY = "orq:queues"


def stream_key(queue: str) -> str:
    return "orq:q:" + validate_queue_name(queue)


def delayed_key(queue: str) -> str:
    return "orq:delayed:" + validate_queue_name(queue)


def dedup_key(queue: str, message_id: str) -> str:
    return f"orq:dedup:{queue}:{message_id}"


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def entry_fields(
    body: bytes, headers: dict[str, str] | None, message_id: str | None
) -> dict[FieldT, EncodableT]:
    fields: dict[FieldT, EncodableT] = {"b": bytes(body)}
    if headers:
        fields["h"] = json.dumps(headers)
    if message_id:
        fields["id"] = message_id
    return fields


def entry_body(fields: dict[bytes, bytes]) -> bytes:
    # ``b`` is ours; an entry XADDed by hand with a single field of any name is a job too.
    return fields[b"b"] if b"b" in fields else next(iter(fields.values()), b"")


# Entries can be XADDed by anyone: every field is read like a body (brokers.intake).
FIELDS = DeliveryFields("headers field 'h'", "id field", count="attempts field 'a'", json_headers=True)


def entry_headers(fields: dict[bytes, bytes]) -> dict[str, str]:
    return FIELDS.clean(fields.get(b"h"))


def entry_position(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
