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
from collections import deque
from collections.abc import Awaitable, Callable

WINDOW = 120.0  # seconds; the same as the NATS duplicate window and the Redis dedup key's TTL
LIMIT = 50_000  # ids remembered at most (oldest forgotten first): a few MiB, whatever the traffic
SLICES = 12  # the window is kept as this many slices of time, each forgotten as a whole


def _compact(message_id: str) -> int | str:
    """A UUID in its one canonical spelling as its 128-bit number (44 bytes, not 85); any other id
    as it is. No two ids meet: an int never equals a str, and only one spelling is converted."""
    m = message_id
    if len(m) == 36 and m[8] == m[13] == m[18] == m[23] == "-":
        digits = m.replace("-", "")
        # ASCII letters and digits only, lowercase: none of the signs, spaces, underscores or
        # other scripts' digits that int(..., 16) also takes; a letter past f raises.
        if len(digits) == 32 and digits.isascii() and digits.isalnum() and digits == digits.lower():
            try:
                return int(digits, 16)
            except ValueError:
                return m
    return m


class RecentIds:
    """Runs a publish once per ``(queue, message_id)`` within :data:`WINDOW` seconds.

    The id counts as published only once the publish succeeded: a failed publish may be retried
    at once, and a concurrent publish of the same id waits for the one in flight instead of
    sending a second copy. A future exists only when a second publisher of the same id has to
    wait.

    Every publish of a worker passes through here (its results carry ids), so what an id costs
    is a worker's memory: the ids are kept in slices of ``window / SLICES`` seconds, each a set
    per queue, and a slice is forgotten whole once all of it is older than the window. An id is
    thus remembered at least ``window`` seconds and at most one slice more; a UUID is kept as its
    number. 20,000 ids take 3.1 MiB instead of the 5.3 MiB an ordered dict of timestamps took.
    """

    def __init__(self, window: float = WINDOW, limit: int = LIMIT) -> None:
        self.window, self.limit = window, limit
        self._slice = window / SLICES
        self._slices: deque[tuple[float, dict[str, set[int | str]]]] = deque()  # (start, ids by queue)
        self._count = 0
        self._sending: dict[tuple[str, str], asyncio.Future[bool] | None] = {}

    async def once(self, queue: str, message_id: str, publish: Callable[[], Awaitable[None]]) -> bool:
        """Publish unless this id went out recently; True if this call published it."""
        key = (queue, message_id)
        while key in self._sending:  # the same id is being published right now: wait for it
            waiter = self._sending[key]
            if waiter is None:
                waiter = self._sending[key] = asyncio.get_running_loop().create_future()
            await asyncio.shield(waiter)
        self._forget_old(time.monotonic())
        kept = _compact(message_id)
        if self._seen(queue, kept):
            return False
        self._sending[key] = None
        try:
            await publish()
        except BaseException:
            self._settle(key, False)
            raise
        self._remember(queue, kept, time.monotonic())
        self._settle(key, True)
        return True

    def _seen(self, queue: str, kept: int | str) -> bool:
        for _, by_queue in self._slices:
            ids = by_queue.get(queue)
            if ids is not None and kept in ids:
                return True
        return False

    def _remember(self, queue: str, kept: int | str, now: float) -> None:
        if not self._slices or self._slices[-1][0] + self._slice <= now:
            self._slices.append((now, {}))
        self._slices[-1][1].setdefault(queue, set()).add(kept)
        self._count += 1
        while self._count > self.limit and self._slices:  # past the limit: the oldest slice goes
            self._drop_oldest()

    def _settle(self, key: tuple[str, str], published: bool) -> None:
        waiter = self._sending.pop(key, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(published)

    def forget_queue(self, queue: str) -> None:
        """A deleted queue starts afresh, as on the other brokers."""
        for _, by_queue in self._slices:
            self._count -= len(by_queue.pop(queue, ()))

    def _forget_old(self, now: float) -> None:
        # A slice goes once its newest possible id is older than the window.
        while self._slices and self._slices[0][0] + self._slice < now - self.window:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        _, by_queue = self._slices.popleft()
        self._count -= sum(len(ids) for ids in by_queue.values())
