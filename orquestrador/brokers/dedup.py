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
LIMIT = 200_000  # ids remembered at most (oldest forgotten first), so memory stays bounded


class RecentIds:
    """Runs a publish once per ``(queue, message_id)`` within :data:`WINDOW` seconds.

    The id counts as published only once the publish succeeded: a failed publish may be retried
    at once, and a concurrent publish of the same id waits for the one in flight instead of
    sending a second copy.
    """

    def __init__(self, window: float = WINDOW, limit: int = LIMIT) -> None:
        self.window, self.limit = window, limit
        self._ids: OrderedDict[tuple[str, str], tuple[float, asyncio.Future[bool]]] = OrderedDict()

    async def once(self, queue: str, message_id: str, publish: Callable[[], Awaitable[None]]) -> bool:
        """Publish unless this id went out recently; True if this call published it."""
        key = (queue, message_id)
        while True:
            self._forget_old()
            entry = self._ids.get(key)
            if entry is None:
                break
            _, sent = entry
            if not sent.done():
                await asyncio.shield(sent)  # the same id is being published right now
                continue
            if sent.result():
                return False
            self._ids.pop(key, None)
        sent = asyncio.get_running_loop().create_future()
        self._ids[key] = (time.monotonic(), sent)
        try:
            await publish()
        except BaseException:
            self._ids.pop(key, None)
            sent.set_result(False)
            raise
        sent.set_result(True)
        return True

    def forget_queue(self, queue: str) -> None:
        """A deleted queue starts afresh, as on the other brokers."""
        for key in [k for k in self._ids if k[0] == queue]:
            del self._ids[key]

    def _forget_old(self) -> None:
        oldest = time.monotonic() - self.window
        while self._ids:
            key, (at, sent) = next(iter(self._ids.items()))
            if (at >= oldest or not sent.done()) and len(self._ids) <= self.limit:
                return
            del self._ids[key]
