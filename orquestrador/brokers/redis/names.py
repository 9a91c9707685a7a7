"""Where a queue lives in Redis and how an entry is laid out (see the package docstring)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from redis.typing import EncodableT, FieldT

from orquestrador.brokers.base import validate_queue_name
from orquestrador.brokers.intake import DeliveryFields
from orquestrador.brokers.queues import origin_of

GROUP = "workers"
QUEUES_KEY = "orq:queues"


@dataclass(frozen=True)
class Keys:
    """The keys of a queue: its stream, its delayed retries (a sorted set and ``:msgs``, a hash)
    and its publish-dedup marks.

    On a single server they are ``orq:q:<queue>``, ``orq:delayed:<queue>`` and
    ``orq:dedup:<queue>:<id>`` (the names every release has used). On a Redis Cluster
    (``clustered``) the queue name inside them is a hash tag, ``orq:q:{<queue>}``, and a
    dead-letter queue carries its origin's tag, ``orq:q:{<queue>}.dlq``: every key of one queue
    and of its DLQ lands in one slot, so each script (a dead letter is written and its original
    acked in one) runs on one node.
    """

    clustered: bool = False

    def name(self, queue: str) -> str:
        validate_queue_name(queue)
        if not self.clustered:
            return queue
        origin = origin_of(queue)
        return "{" + origin + "}" + queue[len(origin) :]

    def stream(self, queue: str) -> str:
        return "orq:q:" + self.name(queue)

    def delayed(self, queue: str) -> str:
        return "orq:delayed:" + self.name(queue)

    def dedup(self, queue: str, message_id: str) -> str:
        return f"orq:dedup:{self.name(queue)}:{message_id}"


SINGLE = Keys()
stream_key = SINGLE.stream  # the single-server names, as tests and tools read them
delayed_key = SINGLE.delayed


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
