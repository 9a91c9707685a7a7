"""Names and fields of the Kafka mapping: topics, consumer groups, record headers and keys."""

from __future__ import annotations

import re

from orquestrador.brokers.queues import DLQ_SUFFIX
from orquestrador.topics.delivery import validate_durable_name

RETRY_SUFFIX = ".retry"  # <queue>.retry: copies waiting out a delayed retry (see .consumer)
GROUP_PREFIX = "orq."  # the consumer group of <queue> is orq.<queue>
EVENTS_TOPIC = "orq.eventos"  # lifecycle events, keyed by correlation_id
MESSAGE_ID = "x-orq-message-id"  # the publisher's message id (Kafka records have none of their own)
# On a copy whose attempt was counted because an earlier owner's reservation covered it, not
# because it was surely handed out (see .ledger): it counts no such attempt again, and is handed
# out only after an exact commit.
UNCERTAIN = "x-orq-uncertain"
DUE = "x-orq-due"  # epoch milliseconds when a copy in <queue>.retry goes back to <queue>
SUBJECT = "x-orq-subject"  # an event's subject (orq.eventos...)
TOPICS_TOPIC = "orq.topicos"  # every toolkit topic's messages, keyed by the toolkit topic (see .topics)
TOPIC_HEADER = "x-orq-topico"  # the toolkit topic of a record in orq.topicos
DURABLE_GROUP_PREFIX = "orq.topico."  # the consumer group of durable topic subscription NAME

_CORRELATION = re.compile(rb'"correlation_id"\s*:\s*"([^"\\]{1,200})"')


def group_of(queue: str) -> str:
    return GROUP_PREFIX + queue


def durable_group(durable: str) -> str:
    """The consumer group of durable topic subscription ``durable`` (validated here)."""
    return DURABLE_GROUP_PREFIX + validate_durable_name(durable)


def retry_topic(queue: str) -> str:
    return queue + RETRY_SUFFIX


def topics_of(queue: str) -> list[str]:
    """What one consumer of ``queue`` subscribes to: the queue and, for a job queue, its retries."""
    return [queue] if queue.endswith(DLQ_SUFFIX) else [queue, retry_topic(queue)]


def key_of(body: bytes) -> bytes:
    """The record key: the envelope's ``correlation_id``, so a chain stays in one partition.

    Read from the first bytes without decoding the envelope (ours write it first). A body
    without one gets the empty key: such bodies share one partition, so they keep their order.
    """
    found = _CORRELATION.search(body, 0, 1024)
    return found.group(1) if found else b""
