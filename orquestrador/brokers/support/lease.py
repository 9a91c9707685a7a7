"""A client-side lease for brokers that never take an unsettled message back by themselves
(``server_lease=False``), with the other two fallbacks such brokers need on settling.

Each fetched delivery holds a lease of ``visibility_timeout``: unless ``heartbeat()`` renews it or
the delivery is settled in time, its consumer hands it back to the queue (:meth:`Holder.expired`).
Settling a delivery whose lease expired, or that the broker took back (its channel closed),
raises BrokerError; a ``nack`` of it is a no-op, since the message is back already.

Settling goes through the adapter's :class:`~.attempts.Raw`: ``ack`` acks it, ``nack()`` hands it
back (the broker marks it redelivered and :mod:`.attempts` counts it on its way out again),
``nack(delay)`` publishes a counted copy to a delay bucket (:mod:`.delays`) and then acks, and
``dead_letter`` publishes to ``<queue>.dlq`` and then acks: never a window where it is nowhere.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar, Generic, Protocol

from orquestrador.brokers.base import Delivery, dlq_of
from orquestrador.brokers.support.attempts import Copier, R
from orquestrador.brokers.support.delays import Buckets, bucket_ms_below
from orquestrador.errors import BrokerError


class Holder(Protocol):
    """The consumer a leased delivery came from."""

    @property
    def queue(self) -> str: ...

    @property
    def visibility(self) -> float: ...

    def done(self, delivery: LeasedDelivery[Any]) -> None:
        """``delivery`` is settled or lost: no longer this consumer's."""

    def expired(self, delivery: LeasedDelivery[Any]) -> None:
        """The lease of ``delivery`` ran out: hand its message back to the queue."""


class LeasedDelivery(Delivery, Generic[R]):
    """A fetched message under a client-side lease (see the module docstring).

    Adapters subclass it to read ``headers``, ``message_id`` and ``problem`` from their message.
    """

    broker_name: ClassVar[str] = "the broker"  # in errors: "..., so RabbitMQ has it back"

    def __init__(self, raw: R, holder: Holder, copier: Copier[R], buckets: Buckets) -> None:
        self.raw = raw
        self._holder, self._copier, self._buckets = holder, copier, buckets
        self.body = raw.body
        self.queue = holder.queue
        self.attempt = raw.previous + 1
        self._state = "held"  # held -> settling -> settled, or lost (back in the queue)
        self._lost = ""
        self._timer = asyncio.get_running_loop().call_later(holder.visibility, self._expire)

    @property
    def held(self) -> bool:
        return self._state == "held"

    def _expire(self) -> None:
        if self._state == "held":
            self.lose("its lease expired without heartbeat")
            self._holder.expired(self)

    def lose(self, reason: str) -> None:
        """The message went back to the queue without this delivery (``reason`` says how)."""
        self._state, self._lost = "lost", reason
        self._timer.cancel()
        self._holder.done(self)

    def _gone(self) -> bool:
        if self._state == "held" and self.raw.gone:
            self.lose("its channel closed")
        return self._state == "lost"

    def _begin(self, what: str) -> None:
        if self._gone():
            raise BrokerError(
                f"cannot {what} a message of {self.queue}: {self._lost}, so {self.broker_name} has it back"
            )
        if self._state != "held":
            raise BrokerError(f"cannot {what} a message of {self.queue}: it is already settled")
        self._state = "settling"
        self._timer.cancel()

    def _resume(self) -> None:
        self._state = "held"
        self._timer = asyncio.get_running_loop().call_later(self._holder.visibility, self._expire)

    def _finish(self, *, ack: bool, what: str) -> None:
        self._state = "settled"
        self._holder.done(self)
        if not self.raw.settle(ack=ack):
            raise BrokerError(
                f"{what} on {self.queue} lost with its channel; {self.broker_name} redelivers it"
            )

    async def _copy_then_ack(
        self, queue: str, attempts: int, headers: dict[str, str] | None, what: str
    ) -> None:
        try:
            await self._copier.send_copy(queue, self.raw, attempts=attempts, headers=headers)
        except BrokerError:
            self._resume()
            raise
        self._finish(ack=True, what=what)

    async def ack(self) -> None:
        self._begin("ack")
        self._finish(ack=True, what="ack")

    async def nack(self, delay: float = 0.0) -> None:
        await self._later(delay, self.attempt)

    defer_is_free = True

    async def defer(self, delay: float) -> None:
        """A delayed copy that keeps this delivery's count, in the bucket at or below ``delay``:
        buckets round up, so a long wait would end late; this one ends early and is held back
        again for the rest, each time closer (a few steps at most), and no attempt is spent."""
        await self._later(bucket_ms_below(delay) / 1000, self.attempt - 1)

    async def _later(self, delay: float, attempts: int) -> None:
        if self._gone():
            return  # already back in the queue, which is what a nack asks for
        self._begin("nack")
        if delay <= 0:
            self._finish(ack=False, what="nack")
            return
        try:
            bucket = await self._buckets.retry_bucket(self.queue, delay)
        except BrokerError:
            self._resume()
            raise
        await self._copy_then_ack(bucket, attempts, None, "ack after the delayed copy")

    async def heartbeat(self) -> None:
        if self._state in ("settling", "settled"):
            return
        if not self._gone():
            self._timer.cancel()
            self._resume()
            return
        self._begin("renew the lease of")  # raises: the message went back to the queue

    async def dead_letter(self, reason: str, *, error_type: str = "Error") -> None:
        self._begin("dead-letter")
        headers = self.dead_letter_headers(reason, error_type)
        await self._copy_then_ack(dlq_of(self.queue), 0, headers, "ack after dead-lettering")
