"""Publishing to JetStream while a NATS server restarts.

nats-py buffers what is published while it is disconnected and sends it once reconnected, but
the PubAck request of a publish can still be lost with the old connection, or find no responder
(or a "JetStream unavailable" answer) while the server recovers its streams. A single attempt
then waits out the whole request timeout (10 s) or fails, and a worker fails a job's result
although the server is back a moment later.

A publish with a ``message_id`` is safe to send again: JetStream drops a second copy with the
same ``Nats-Msg-Id`` within the stream's duplicate window. Those are re-sent as soon as the
client reconnects, and retried (short attempts, bounded in total) while the client is
disconnected or has just reconnected. A publish without an id gets one attempt, as before:
sending it twice could duplicate it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

import nats.errors
import nats.js.errors

RECOVERY_WINDOW = 30.0  # seconds after a reconnect during which JetStream may still be recovering
ATTEMPT_TIMEOUT = 2.0  # seconds per attempt while recovering
RETRY_FOR = 60.0  # at most this long in total for one publish, then it fails as before

# What a publish meets while the server restarts; anything else (a wrong stream, a message too
# large) fails at once.
log = logging.getLogger(__name__)

TRANSIENT: tuple[type[BaseException], ...] = (
    nats.errors.TimeoutError,
    TimeoutError,
    nats.errors.NoRespondersError,
    nats.js.errors.NoStreamResponseError,
    nats.js.errors.ServiceUnavailableError,
    nats.errors.ConnectionReconnectingError,
)


class Reconnects:
    """What the adapter knows of its reconnects: when the last one was, and a wake-up for the next."""

    def __init__(self) -> None:
        self.count = 0
        self.at = -RECOVERY_WINDOW  # monotonic time of the last reconnect
        self._next: asyncio.Future[None] | None = None

    def reconnected(self) -> None:
        self.count += 1
        self.at = time.monotonic()
        if self._next is not None and not self._next.done():
            self._next.set_result(None)
        self._next = None

    def next(self) -> asyncio.Future[None]:
        """Resolves at the next reconnect."""
        if self._next is None or self._next.done():
            self._next = asyncio.get_running_loop().create_future()
        return self._next

    def recent(self) -> bool:
        return time.monotonic() - self.at < RECOVERY_WINDOW


async def publish(
    send: Callable[[float], Awaitable[object]],
    *,
    request_timeout: float,
    retry: bool,
    reconnects: Reconnects,
    connected: Callable[[], bool],
    clustered: bool = False,
) -> None:
    """``send(timeout)`` once, or (``retry``) until it succeeds, for up to :data:`RETRY_FOR` seconds.

    ``clustered``: the stream is replicated, so a transient failure while connected is a leader
    change (the stream's servers elect another, for a few seconds) and is retried as well.
    """
    if not retry:
        await send(request_timeout)
        return

    def recovering() -> bool:
        return clustered or not connected() or reconnects.recent()

    if connected() and not reconnects.recent():
        # The common case, every job and result: one plain attempt, no task or waiters around
        # it. A request caught by a disconnect waits out its timeout, then retries below.
        try:
            await send(request_timeout)
            return
        except TRANSIENT as exc:
            if not recovering():
                raise
            log.info("publish not confirmed while the server comes back (%r); sending it again", exc)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(RETRY_FOR, request_timeout)
    pause = 0.1
    while True:
        timeout = min(ATTEMPT_TIMEOUT, request_timeout) if recovering() else request_timeout
        attempt = asyncio.ensure_future(send(timeout))
        woken = reconnects.next()
        try:
            racing: list[asyncio.Future[Any]] = [cast(asyncio.Future[Any], attempt), woken]
            await asyncio.wait(racing, return_when=asyncio.FIRST_COMPLETED)
            if not attempt.done():  # reconnected meanwhile: the request may be lost; send again
                attempt.cancel()
                with contextlib.suppress(asyncio.CancelledError, *TRANSIENT):
                    await attempt
                continue
            attempt.result()
            return
        except TRANSIENT as exc:
            if loop.time() >= deadline or not recovering():
                raise
            log.info("publish not confirmed while the server comes back (%r); sending it again", exc)
        finally:
            if not attempt.done():
                attempt.cancel()
        await asyncio.sleep(min(pause, max(0.0, deadline - loop.time())))
        pause = min(1.0, pause * 2)
