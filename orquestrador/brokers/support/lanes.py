"""Priority lanes, for brokers without native priority (``Broker.native_priority=False``).

A job queue ``<fila>`` gets two lanes beside it: ``<fila>__p4`` for prioridade 1 to 4 and
``<fila>__p9`` for 5 to 9; prioridade 0 stays in ``<fila>`` itself, so jobs launched without a
priority travel exactly as before. Workers read the highest non-empty lane first, so under a
backlog a more urgent job starts before every less urgent one waiting; within a lane, jobs keep
their queue's order. Three levels, not ten: every lane is one more queue for each worker to look
at, and three are enough to let urgent work overtake a backlog.

The cost stays off the hot path: a worker looks at empty lanes at most every
``Broker.lane_poll`` seconds (0.1; SQS 1) with a quick read that does not wait, and otherwise
waits on ``<fila>`` as it always did, so a lone job there starts as fast as without lanes, and
an urgent job reaches an idle worker within ``lane_poll``. A lane's deliveries settle in the
lane (a retry keeps its priority); their dead letters go to ``<fila>.dlq`` beside every other
dead letter of the queue, naming their lane (``DLQ_LANE``), and a replay puts them back there.
"""

from __future__ import annotations

import asyncio

from orquestrador.brokers.base import Broker, Consumer, Delivery
from orquestrador.brokers.queues import DLQ_LANE, JOB_QUEUE_PREFIXES

LANES = ((5, "__p9"), (1, "__p4"))  # (lowest prioridade, suffix), the most urgent first
HOT_WAIT = 0.05  # seconds to wait on a lane that gave jobs at the last look


def lane_of(queue: str, prioridade: int) -> str:
    """The queue a job of ``prioridade`` is published to (``queue`` itself for 0)."""
    for lowest, suffix in LANES:
        if prioridade >= lowest:
            return queue + suffix
    return queue


def lanes_of(queue: str) -> list[str]:
    """Every lane of ``queue``, the most urgent first."""
    return [queue + suffix for _, suffix in LANES]


async def consume(broker: Broker, queue: str, *, visibility_timeout: float, prefetch: int) -> Consumer:
    """A consumer of ``queue`` that also reads its lanes, where the broker needs them."""
    base = await broker.consume(queue, visibility_timeout=visibility_timeout, prefetch=prefetch)
    if broker.native_priority or not queue.startswith(JOB_QUEUE_PREFIXES):
        return base
    lanes: list[Consumer] = []
    try:
        for lane in lanes_of(queue):
            lanes.append(await broker.consume(lane, visibility_timeout=visibility_timeout, prefetch=prefetch))
    except BaseException:
        for consumer in [*lanes, base]:
            await consumer.close()
        raise
    return LaneConsumer(broker, queue, base, lanes)


class LaneConsumer(Consumer):
    """Reads the lanes (most urgent first) before the queue itself; see the module."""

    def __init__(self, broker: Broker, queue: str, base: Consumer, lanes: list[Consumer]) -> None:
        self._broker = broker
        self._queue = queue
        self._base = base
        self._lanes = lanes
        self._next_look = 0.0  # loop time at which the lanes are looked at again
        self._hot = -1  # the lane that gave jobs at the last look, if one did

    async def fetch(self, max_messages: int, timeout: float) -> list[Delivery]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, timeout)
        while True:
            if loop.time() >= self._next_look:
                for i, lane in enumerate(self._lanes):
                    # A lane that just gave jobs likely has more, which a push broker (RabbitMQ)
                    # sends only after the last ack: wait for them a moment before going down.
                    urgent = await lane.fetch(max_messages, HOT_WAIT if i == self._hot else 0.0)
                    if urgent:  # more may wait there: look again on the next fetch
                        self._hot = i
                        return [LaneDelivery(self._broker, self._queue, d) for d in urgent]
                self._hot = -1
                self._next_look = loop.time() + self._broker.lane_poll
            wait = max(0.0, min(deadline, self._next_look) - loop.time())
            batch = await self._base.fetch(max_messages, wait)
            if batch or loop.time() >= deadline:
                return batch

    async def close(self) -> None:
        outcomes = await asyncio.gather(
            *(c.close() for c in [self._base, *self._lanes]), return_exceptions=True
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome


class LaneDelivery(Delivery):
    """A lane's delivery, seen as one of its queue's: it settles in the lane, dead-letters to
    ``<queue>.dlq``."""

    def __init__(self, broker: Broker, queue: str, inner: Delivery) -> None:
        self._broker = broker
        self.inner = inner
        self.body = inner.body
        self.headers = inner.headers
        self.queue = queue
        self.attempt = inner.attempt
        self.message_id = inner.message_id
        self.problem = inner.problem
        self.position = None  # a lane's positions do not order against the queue's
        self.defer_is_free = inner.defer_is_free

    def underlying(self) -> Delivery:
        self.inner.reply = self.reply
        return self.inner

    async def ack(self) -> None:
        await self.underlying().ack()

    async def nack(self, delay: float = 0.0) -> None:
        await self.inner.nack(delay)

    async def defer(self, delay: float) -> None:
        await self.inner.defer(delay)

    async def heartbeat(self) -> None:
        await self.inner.heartbeat()

    def dead_letter_headers(self, reason: str, error_type: str) -> dict[str, str]:
        return {**super().dead_letter_headers(reason, error_type), DLQ_LANE: self.inner.queue}

    async def _publish_dead_letter(self, dlq: str, headers: dict[str, str]) -> None:
        await self._broker.publish(dlq, self.body, headers=headers)


async def replay_target(broker: Broker, queue: str, headers: dict[str, str]) -> str:
    """Where a dead letter of ``queue`` is replayed to: the lane it names (declared), if that is
    one of ``queue``'s (the header is read from the broker: anything else goes to ``queue``)."""
    lane = headers.get(DLQ_LANE)
    if broker.native_priority or lane not in lanes_of(queue):
        return queue
    await broker.declare(lane)
    return lane


__all__ = [
    "HOT_WAIT", "LANES", "LaneConsumer", "LaneDelivery", "consume", "lane_of", "lanes_of", "replay_target",
]  # fmt: skip
