"""How queues map to JetStream names (see the package docstring)."""

from __future__ import annotations

import re

from orquestrador.brokers.base import DLQ_SUFFIX, validate_queue_name

STREAM_PREFIX = "ORQ_"
RATE_LIMIT_BUCKET = "ORQ_RATELIMIT"
KV_KEY = re.compile(r"[^-/_=.a-zA-Z0-9]")
DURABLE = "workers"
MSG_ID = "Nats-Msg-Id"


def stream_name(queue: str) -> str:
    validate_queue_name(queue)
    if queue.endswith(DLQ_SUFFIX):
        return STREAM_PREFIX + queue[: -len(DLQ_SUFFIX)] + "__dlq"
    return STREAM_PREFIX + queue


def queue_name(stream: str) -> str | None:
    if not stream.startswith(STREAM_PREFIX):
        return None
    base = stream[len(STREAM_PREFIX) :]
    return base[: -len("__dlq")] + DLQ_SUFFIX if base.endswith("__dlq") else base

