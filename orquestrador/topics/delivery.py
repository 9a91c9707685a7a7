"""How every adapter hands a topic message to a subscription's callback, live or durable.

Brokers' wildcards over-deliver (Redis's ``*`` crosses dots, AMQP's ``#`` matches nothing) and
anyone can put bytes on a topic, so each body is decoded and its ``topico`` held to the
pattern here, once for all adapters: a body that is no topic message is logged and skipped
(a durable one acked: redelivering it cannot fix it), so it never reaches a callback nor ends
a subscription.

Durable deliveries retry a raising callback in the process, :data:`MAX_ATTEMPTS` times with
:func:`backoff` between, holding the message unacked (should the process die meanwhile, the
broker delivers it again); after the last failure it is acked and logged as dropped, so one
poisoned message cannot stall a durable subscription for ever. Deliveries of one durable
subscription are in order, one at a time: a retried message holds back the next ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

from orquestrador.errors import TopicError
from orquestrador.topics.message import TopicMessage
from orquestrador.topics.patterns import matches

log = logging.getLogger("orquestrador.topics")

# A subscription's callback: the concrete topic and the raw body, a TopicMessage in JSON that
# decoded and matched the pattern (decoding it again is the caller's).
TopicCallback = Callable[[str, bytes], Awaitable[None]]

MAX_ATTEMPTS = 5
_DURABLE_NAME = re.compile(r"[A-Za-z0-9_-]{1,100}")


def backoff(attempt: int) -> float:
    """Seconds before attempt ``attempt + 1`` of a durable delivery (1, 2, 4, 8 s)."""
    return float(min(2 ** (attempt - 1), 30))


def validate_durable_name(name: object) -> str:
    """A durable subscription's name becomes a queue, consumer or group name on the broker."""
    if not isinstance(name, str) or not _DURABLE_NAME.fullmatch(name):
        raise TopicError(f"bad durable subscription name {name!r}: use 1 to 100 letters, digits, '_' or '-'")
    return name


def topic_for(pattern: str, body: bytes) -> str | None:
    """The topic ``body`` is on if it is a topic message ``pattern`` subscribes to, else None
    (a malformed body is logged; one on another topic is a broker wildcard's surplus)."""
    try:
        topic = TopicMessage.decode(body).topico
    except TopicError as exc:
        log.warning("skipped a malformed message for topic subscription %s: %s", pattern, exc)
        return None
    return topic if matches(pattern, topic) else None


async def deliver_live(pattern: str, body: bytes, callback: TopicCallback) -> None:
    """One live delivery: filtered, the callback's failure logged (the subscription goes on)."""
    topic = topic_for(pattern, body)
    if topic is None:
        return
    try:
        await callback(topic, body)
    except Exception:
        log.exception("topic callback for %s failed on %s", pattern, topic)


async def deliver_durable(
    pattern: str,
    body: bytes,
    callback: TopicCallback,
    durable: str,
    *,
    keep_alive: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """One durable delivery; returns when the message may be acked (see the module docstring).

    ``keep_alive`` runs before each retry, for brokers whose lease would lapse meanwhile.
    """
    topic = topic_for(pattern, body)
    if topic is None:
        return
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            await callback(topic, body)
            return
        except Exception:
            if attempt == MAX_ATTEMPTS:
                log.exception(
                    "durable subscription %s dropped a message on %s: its callback failed %d times",
                    durable, topic, MAX_ATTEMPTS,
                )  # fmt: skip
                return
            log.warning(
                "durable subscription %s: callback failed on %s (attempt %d of %d); retrying in %.0f s",
                durable, topic, attempt, MAX_ATTEMPTS, backoff(attempt), exc_info=True,
            )  # fmt: skip
        await asyncio.sleep(backoff(attempt))
        if keep_alive is not None:
            await keep_alive()


def watched(coro: Coroutine[Any, Any, None], what: str) -> asyncio.Task[None]:
    """A subscription's background task, whose unexpected end is logged (never silent)."""
    task = asyncio.ensure_future(coro)

    def ended(done: asyncio.Task[None]) -> None:
        if not done.cancelled() and (exc := done.exception()) is not None:
            log.error("topic subscription %s stopped: it receives nothing more", what, exc_info=exc)

    task.add_done_callback(ended)
    return task


class Gate:
    """Lets a durable subscription stop between deliveries, not inside one: cancelling between
    the callback and its ack would hand the message, done already, to the next subscriber."""

    GRACE = 30.0  # the longest unsubscribe waits for a delivery in progress

    def __init__(self) -> None:
        self.stopping = False
        self._idle = asyncio.Event()
        self._idle.set()

    @contextlib.asynccontextmanager
    async def delivery(self) -> AsyncIterator[None]:
        self._idle.clear()
        try:
            yield
        finally:
            self._idle.set()

    async def close(self) -> None:
        self.stopping = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), self.GRACE)


async def stop(task: asyncio.Task[None], gate: Gate | None = None, *, drain: float = 0.0) -> None:
    """Stop a subscription's task and wait for it (its own failure was logged already).

    With a ``gate``, after the delivery in progress; with ``drain``, the task gets that long to
    end by itself first: a fetch cut off by a cancel may have taken messages on the server that
    nobody then receives until their lease ends.
    """
    if gate is not None:
        await gate.close()
    if drain:
        await asyncio.wait({task}, timeout=drain)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
