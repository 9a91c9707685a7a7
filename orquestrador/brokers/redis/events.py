"""Best-effort lifecycle events over Redis pub/sub, on subscriptions that outlive a lost connection.

Each subscription reads on a connection of its own (pub/sub holds one while subscribed) from a
pool without redis-py's retries: those would hide a drop and, after about ten seconds, end the
read with an error that nobody awaits, so the subscription died silently. Here the reading task
itself logs the drop, reconnects with backoff (the connection subscribes again as it opens) and
says when events flow again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from orquestrador.brokers.base import EventCallback
from orquestrador.brokers.redis.errors import DRIVER_ERRORS, mapped

log = logging.getLogger(__name__)

PREFIX = "orq:ev:"
MAX_DELAY = 5.0


def channel_of(subject: str, prefix: str = PREFIX) -> tuple[str, bool]:
    """The pub/sub channel (a glob pattern when ``subject`` has NATS wildcards) and whether it is
    one. The glob's ``*`` also crosses dots: a subscriber filters by tokens (topics do)."""
    tokens = subject.split(".")
    wildcard = "*" in tokens or ">" in tokens
    return prefix + ".".join("*" if t in ("*", ">") else t for t in tokens), wildcard


async def subscribe(
    client: Any, subject: str, callback: EventCallback, where: str, *, prefix: str = PREFIX
) -> Callable[[], Awaitable[None]]:
    """Start receiving ``subject``'s events (or, with ``prefix``, another family of channels:
    topics); returns the async unsubscribe (``where``: the server, redacted, for the log)."""
    channel, wildcard = channel_of(subject, prefix)
    connection_class, kwargs = _source(client)
    own = aioredis.ConnectionPool(
        connection_class=connection_class, max_connections=1, **{**kwargs, "retry": Retry(NoBackoff(), 0)}
    )
    pubsub = aioredis.Redis(connection_pool=own).pubsub()
    try:
        with mapped(f"cannot subscribe to {subject}"):
            await (pubsub.psubscribe(channel) if wildcard else pubsub.subscribe(channel))
            for _ in range(50):  # wait for the confirmation: no event sent after we return is lost
                msg = await pubsub.get_message(timeout=0.1)
                if msg and msg.get("type") in ("subscribe", "psubscribe"):
                    break
    except BaseException:
        await _release(pubsub, own)
        raise
    task = asyncio.ensure_future(_pump(pubsub, subject, callback, where))

    async def unsubscribe() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, *DRIVER_ERRORS):
            await task
        await _release(pubsub, own)

    return unsubscribe


def _source(client: Any) -> tuple[Any, dict[str, Any]]:
    """How to open a connection like ``client``'s. On a Redis Cluster, PUBLISH reaches the
    subscribers of every node, so a subscription reads from the client's default node (and,
    should that node die, keeps retrying it, logging, until it is back)."""
    pool = getattr(client, "connection_pool", None)
    if pool is not None:
        return pool.connection_class, dict(pool.connection_kwargs)
    node = client.get_default_node()
    return node.connection_class, dict(node.connection_kwargs)


async def _pump(pubsub: PubSub, subject: str, callback: EventCallback, where: str) -> None:
    failures, delay = 0, 0.2
    while True:
        try:
            if failures:
                await pubsub.connect()  # type: ignore[no-untyped-call]  # subscribes again as it opens
                log.warning("events %s flow again from Redis at %s", subject, where)
                failures, delay = 0, 0.2
            async for msg in pubsub.listen():
                if msg.get("type") in ("message", "pmessage"):
                    await _deliver(callback, msg["data"], subject)
            return  # unsubscribed
        except DRIVER_ERRORS as exc:
            failures += 1
            if failures in (1, 5) or failures % 20 == 0:
                reason = " ".join(str(exc).split()) or type(exc).__name__
                log.warning(
                    "lost the events subscription %s at Redis %s (%s; attempt %d); reconnecting",
                    subject, where, reason, failures,
                )  # fmt: skip
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, MAX_DELAY)


async def _deliver(callback: EventCallback, data: Any, subject: str) -> None:
    try:
        result = callback(data)
        if asyncio.iscoroutine(result):
            await result
    except Exception:  # one bad callback must not end the subscription
        log.exception("event callback for %s failed", subject)


async def _release(pubsub: PubSub, pool: aioredis.ConnectionPool) -> None:
    with contextlib.suppress(*DRIVER_ERRORS):
        await pubsub.aclose()  # type: ignore[no-untyped-call]
    with contextlib.suppress(*DRIVER_ERRORS):
        await pool.aclose()
