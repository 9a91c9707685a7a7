"""How queues map to JetStream names (see the package docstring)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

from orquestrador.brokers.base import DLQ_SUFFIX, validate_queue_name
from orquestrador.settings import seeds

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


def server_urls(url: str) -> list[str]:
    """``nats://user:pass@h1:4222,h2:4222`` as one URL per seed server (nats-py takes a list).

    The credentials, if any, go with every seed; the servers of a cluster announce the others
    once one of them answers, so a client fails over to servers it was never given.
    """
    parts = urlsplit(url)
    userinfo, at, _ = parts.netloc.rpartition("@")
    hosts = seeds(parts.netloc)
    return [urlunsplit(parts._replace(netloc=f"{userinfo}{at}{host}")) for host in hosts] or [url]
