"""What every adapter's topic subscription does with one message, whatever carried it.

A body comes from anyone who can publish on the broker, so it is decoded before the callback
sees it: one that is no topic message is logged and dropped (acked), never retried, since no
retry can mend it. The concrete topic is the body's ``topico``, held to the one matching rule
(:func:`~orquestrador.topics.matches`) even where the broker already filtered on a header or a
prefix. A callback that raises is logged; on a durable subscription its message comes back,
:data:`MAX_DELIVERIES` times in all with a growing pause (:func:`backoff`), then is logged as
dropped so one poison message cannot stop a subscription for good.
"""

from __future__ import annotations

import logging

from orquestrador.brokers.base import TopicCallback
from orquestrador.errors import TopicError
from orquestrador.topics.message import TopicMessage
from orquestrador.topics.patterns import matches

log = logging.getLogger("orquestrador.topics")

MAX_DELIVERIES = 5  # a durable subscription's calls of a callback that keeps raising, in all


def topic_of(body: bytes, pattern: str, where: str) -> str | None:
    """The topic of ``body`` if it is a topic message ``pattern`` matches; a malformed body is
    logged (``where``: the subscription, for the log) and gives None, as does a non-matching one."""
    try:
        topic = TopicMessage.decode(body).topico
    except TopicError as exc:
        log.warning("dropped a malformed message on %s: %s", where, exc)
        return None
    return topic if matches(pattern, topic) else None


async def called(callback: TopicCallback, topic: str, body: bytes, where: str, attempt: int = 1) -> bool:
    """Whether ``callback`` returned; a raise is logged with the attempt, never propagated."""
    try:
        await callback(topic, body)
    except Exception:
        log.exception("topic callback of %s failed on %s (delivery %d)", where, topic, attempt)
        return False
    return True


def backoff(attempt: int) -> float:
    """Seconds before delivery ``attempt + 1`` of a message whose callback raised."""
    return float(min(30, 2 ** (attempt - 1)))


def gave_up(topic: str, where: str, attempts: int) -> None:
    log.error(
        "dropped a message on %s for %s after %d failed deliveries: its callback keeps raising",
        topic, where, attempts,
    )  # fmt: skip
