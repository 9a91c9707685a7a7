"""Consuming from SQS: long-poll ReceiveMessage, and deliveries settled by receipt handle.

See :mod:`orquestrador.brokers.sqs` for the mapping. Every call is stateless on the SQS side,
so a consumer holds nothing but its queue and visibility timeout: closing it stops fetching,
and what it fetched and did not settle returns at its visibility timeout.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any, Protocol

from orquestrador.brokers.base import Consumer, Delivery
from orquestrador.brokers.intake import FieldReader
from orquestrador.brokers.sqs.errors import is_missing_queue, mapped
from orquestrador.brokers.sqs.names import read_body, read_headers, read_message_id
from orquestrador.errors import BrokerError

log = logging.getLogger(__name__)

MAX_VISIBILITY = 43_200  # SQS's limit (12 h), in whole seconds
MAX_WAIT = 20  # SQS's longest long poll
SHORT_POLL_PAUSE = 0.1  # between short polls, when a fetch waits less than a second
LONG_POLL_SLACK = 0.05  # seconds a long poll may outlast its fetch's timeout
SYSTEM_ATTRIBUTES = ["ApproximateReceiveCount", "SentTimestamp", "MessageGroupId", "SequenceNumber"]


def seconds(value: float) -> int:
    """Whole seconds for SQS (it takes no fractions), rounded up, within its limits."""
    return max(0, min(MAX_VISIBILITY, math.ceil(value)))


def _long_poll(remaining: float) -> int:
    """The long poll for a fetch with ``remaining`` seconds, in whole seconds (SQS's unit), never
    much longer than asked: a worker's 1 s fetch is one long poll, answered as soon as a message
    arrives, instead of ten short polls; under a second, short polls :data:`SHORT_POLL_PAUSE`
    apart (a caller renewing leases between fetches relies on their timeout)."""
    return max(0, min(MAX_WAIT, int(remaining + LONG_POLL_SLACK)))


class Host(Protocol):
    """What consumers and deliveries need of their broker, so this module never imports it."""

    fifo: bool

    @property
    def sqs(self) -> Any: ...

    async def url_of(self, queue: str) -> str: ...

    async def redeclare(self, queue: str) -> None: ...

    async def send(
        self, queue: str, body: bytes, *, message_id: str | None = None,
        headers: dict[str, str] | None = None, group: str | None = None,
    ) -> None: ...  # fmt: skip


class SqsDelivery(Delivery):
    """One received message; its receipt handle settles it."""

    def __init__(self, consumer: SqsConsumer, url: str, message: dict[str, Any]) -> None:
        self._consumer = consumer
        self._broker = consumer.broker
        self._url = url
        self.queue = consumer.queue
        self.receipt = str(message.get("ReceiptHandle", ""))
        attributes = message.get("MessageAttributes") or {}
        system = message.get("Attributes") or {}
        # Anyone with SendMessage rights writes these: read like a body (brokers.intake).
        reader = FieldReader()
        self.body = read_body(message.get("Body"), attributes, reader)
        self.headers = read_headers(attributes, reader)
        self.message_id = read_message_id(attributes, reader)
        self.attempt = max(1, reader.count(system.get("ApproximateReceiveCount"), "ApproximateReceiveCount"))
        self.group: str | None = system.get("MessageGroupId")
        self.problem = reader.problem

    async def _visibility(self, timeout: int, what: str) -> None:
        with mapped(f"{what} on {self.queue} failed"):
            await self._broker.sqs.change_message_visibility(
                QueueUrl=self._url, ReceiptHandle=self.receipt, VisibilityTimeout=timeout
            )

    async def ack(self) -> None:
        with mapped(f"ack on {self.queue} failed"):
            await self._broker.sqs.delete_message(QueueUrl=self._url, ReceiptHandle=self.receipt)

    async def nack(self, delay: float = 0.0) -> None:
        """Visible again after ``delay`` (SQS holds it: whole seconds, at most 12 h)."""
        await self._visibility(seconds(delay), "nack")

    async def heartbeat(self) -> None:
        await self._visibility(self._consumer.visibility, "heartbeat")

    async def _publish_dead_letter(self, dlq: str, headers: dict[str, str]) -> None:
        await self._broker.send(dlq, self.body, headers=headers, group=self.group)


class SqsConsumer(Consumer):
    """ReceiveMessage with the consumer's visibility timeout; long polls up to 20 s at a time."""

    def __init__(self, broker: Host, queue: str, visibility: float) -> None:
        self.broker = broker
        self.queue = queue
        self.visibility = max(1, seconds(visibility))
        self._closed = False

    async def fetch(self, max_messages: int, timeout: float) -> list[Delivery]:
        if self._closed:
            raise BrokerError(f"the consumer of {self.queue} is closed")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, timeout)
        while not self._closed:
            wait = _long_poll(deadline - loop.time())
            url = await self.broker.url_of(self.queue)
            try:
                messages = await self._receive(url, max_messages, wait)
            except BrokerError as exc:
                if not is_missing_queue(exc.__cause__ or exc):
                    raise
                log.warning("SQS queue of %s vanished; declaring it again", self.queue)
                await self.broker.redeclare(self.queue)
                continue
            if messages:
                return [SqsDelivery(self, url, m) for m in messages]
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            if wait == 0:
                await asyncio.sleep(min(SHORT_POLL_PAUSE, remaining))
        return []

    async def _receive(self, url: str, max_messages: int, wait: int) -> list[dict[str, Any]]:
        """Up to ``max_messages``; on FIFO queues one per receive, so a batch never holds two
        messages of one chain (run side by side, they would finish out of order): the first
        receive waits, the rest, in parallel, take one message of another chain each, if any."""
        if not self.broker.fifo:
            return await self._receive_some(url, max_messages, wait)
        first = await self._receive_some(url, 1, wait)
        if not first or max_messages <= 1:
            return first
        more = await asyncio.gather(*(self._receive_some(url, 1, 0) for _ in range(min(9, max_messages - 1))))
        return first + [message for batch in more for message in batch]

    async def _receive_some(self, url: str, max_messages: int, wait: int) -> list[dict[str, Any]]:
        with mapped(f"fetch from {self.queue} failed"):
            reply = await self.broker.sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=max(1, min(10, max_messages)), WaitTimeSeconds=wait,
                VisibilityTimeout=self.visibility, MessageSystemAttributeNames=SYSTEM_ATTRIBUTES,
                MessageAttributeNames=["All"],
            )  # fmt: skip
        return list(reply.get("Messages", []))

    async def close(self) -> None:
        self._closed = True
