"""Publish-side deduplication by ``message_id`` for brokers that have none of their own.

NATS JetStream drops a second message with the same ``Nats-Msg-Id`` within the stream's
duplicate window, and the Redis adapter keeps a short-lived key per id; both work across every
client of the server. RabbitMQ (without the message-deduplication plugin) keeps nothing of the
kind, so its adapter remembers, per connection, the ids it published in the last
:data:`WINDOW` seconds. That covers a process re-sending what it already sent (a re-launched
batch, a retried pipeline step), not two processes sending one id: for those, consumers see
both copies and rely on the store and ``salvar`` recording once per ``message_id``.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

WINDOW = 120.0  # seconds; the same as the NATS duplicate window and the Redis dedup key's TTL
LIMIT = 50_000  # ids remembered at most (oldest forgotten first): a few MiB, whatever the traffic


class RecentIds:
    """Runs a publish once per ``(queue, message_id)`` within :data:`WINDOW` seconds.

    The id counts as published only once the publish succeeded: a failed publish may be retried
    at once, and a concurrent publish of the same id waits for the one in flight instead of
    sending a second copy. Every publish passes through here, so the common case (a new id, no
    one racing it) costs two dict operations: a remembered id is only its send time, and a
    future exists only when a second publisher of the same id has to wait.
    """

    def __init__(self, window: float = WINDOW, limit: int = LIMIT) -> None:
        self.window, self.limit = window, limit
        self._sent: OrderedDict[tuple[str, str], float] = OrderedDict()  # oldest first
        self._sending: dict[tuple[str, str], asyncio.Future[bool] | None] = {}

    async def once(self, queue: str, message_id: str, publish: Callable[[], Awaitable[None]]) -> bool:
        """Publish unless this id went out recently; True if this call published it."""
        key = (queue, message_id)
        while key in self._sending:  # the same id is being published right now: wait for it
            waiter = self._sending[key]
            if waiter is None:
                waiter = self._sending[key] = asyncio.get_running_loop().create_future()
            await asyncio.shield(waiter)
        now = time.monotonic()
        at = self._sent.get(key)
        if at is not None:
            if at >= now - self.window:
                return False
            del self._sent[key]
        self._sending[key] = None
        try:
            await publish()
        except BaseException:
            self._settle(key, False)
            raise
        self._sent[key] = time.monotonic()
        self._settle(key, True)
        self._forget_old()
        return True

    def _settle(self, key: tuple[str, str], published: bool) -> None:
        waiter = self._sending.pop(key, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(published)

    def forget_queue(self, queue: str) -> None:
        """A deleted queue starts afresh, as on the other brokers."""
        for key in [k for k in self._sent if k[0] == queue]:
            del self._sent[key]

    def _forget_old(self) -> None:
        oldest = time.monotonic() - self.window
        sent = self._sent
        while sent:
            at = next(iter(sent.values()))
            if at >= oldest and len(sent) <= self.limit:
                return
            sent.popitem(last=False)
