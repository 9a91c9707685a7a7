"""Best-effort events over SNS: one topic, a throwaway SQS queue per subscription.

``publish_event`` publishes to the SNS topic :data:`TOPIC` with the subject in the message
attribute :data:`SUBJECT`. ``subscribe_events`` creates an SQS queue ``orq-events-<random>``
(messages kept 60 s, SQS's least), subscribes it to the topic with raw message delivery, and
long-polls it; subjects are matched here, NATS-style (``*`` one token, ``>`` the rest).
Unsubscribing (or closing the broker) removes the subscription and the queue; a process killed
meanwhile leaves them behind, holding at most a minute of events (``orq-events-`` names them).

Topics (:mod:`.topics`) stand on the same SNS-to-SQS fan-out (:mod:`.fanout`), on a topic
of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from orquestrador.brokers.base import EventCallback
from orquestrador.brokers.intake import FieldReader
from orquestrador.brokers.sqs.errors import DRIVER_ERRORS, mapped
from orquestrador.brokers.sqs.fanout import subscribe_queue
from orquestrador.brokers.sqs.names import ENCODING, encode_body, read_body
from orquestrador.errors import BrokerError
from orquestrador.topics.patterns import matches

log = logging.getLogger(__name__)

TOPIC = "orquestrador-events"
SUBJECT = "orq-subject"
QUEUE_PREFIX = "orq-events-"
POLL = 10  # seconds per long poll of a subscription's queue


class Host(Protocol):
    @property
    def sqs(self) -> Any: ...

    async def sns(self) -> Any: ...


class SnsEvents:
    """The events of one broker connection (see the module docstring)."""

    def __init__(self, host: Host) -> None:
        self._host = host
        self._topic: str | None = None
        self._lock = asyncio.Lock()
        self._subscriptions: set[Callable[[], Awaitable[None]]] = set()

    async def _topic_arn(self) -> tuple[Any, str]:
        sns = await self._host.sns()
        async with self._lock:
            if self._topic is None:
                with mapped("cannot create the SNS events topic"):
                    self._topic = str((await sns.create_topic(Name=TOPIC))["TopicArn"])
            return sns, self._topic

    async def publish(self, subject: str, body: bytes) -> None:
        text, base64_body = encode_body(body)
        attributes = {SUBJECT: {"DataType": "String", "StringValue": subject}}
        if base64_body:
            attributes[ENCODING] = {"DataType": "String", "StringValue": "base64"}
        try:
            sns, topic = await self._topic_arn()
            await sns.publish(TopicArn=topic, Message=text, MessageAttributes=attributes)
        except (BrokerError, *DRIVER_ERRORS) as exc:  # best effort: a lost event fails no job
            log.debug("event not sent: %s", exc)

    async def subscribe(self, subject: str, callback: EventCallback) -> Callable[[], Awaitable[None]]:
        sns, topic = await self._topic_arn()
        sqs = self._host.sqs
        name = QUEUE_PREFIX + uuid.uuid4().hex[:16]
        attributes = {"MessageRetentionPeriod": "60"}
        made = await subscribe_queue(sns, sqs, topic, name, attributes=attributes, tags={}, fresh=True)
        url, subscription = made.url, made.subscription
        task = asyncio.ensure_future(self._pump(url, subject, callback))

        async def unsubscribe() -> None:
            self._subscriptions.discard(unsubscribe)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            with contextlib.suppress(*DRIVER_ERRORS):
                await sns.unsubscribe(SubscriptionArn=subscription)
            with contextlib.suppress(*DRIVER_ERRORS):
                await sqs.delete_queue(QueueUrl=url)

        self._subscriptions.add(unsubscribe)
        return unsubscribe

    async def _pump(self, url: str, subject: str, callback: EventCallback) -> None:
        sqs, failures = self._host.sqs, 0
        while True:
            try:
                reply = await sqs.receive_message(
                    QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=POLL, MessageAttributeNames=["All"]
                )
                messages = reply.get("Messages", [])
                if messages:
                    entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                               for i, m in enumerate(messages)]  # fmt: skip
                    await sqs.delete_message_batch(QueueUrl=url, Entries=entries)
                failures = 0
            except DRIVER_ERRORS as exc:
                failures += 1
                if failures in (1, 10) or failures % 100 == 0:
                    log.warning("events from SQS not received (%s); retrying", exc)
                await asyncio.sleep(min(5.0, 0.2 * failures))
                continue
            for message in messages:
                await self._deliver(message, subject, callback)

    async def _deliver(self, message: dict[str, Any], subject: str, callback: EventCallback) -> None:
        attributes = message.get("MessageAttributes") or {}
        sent = (attributes.get(SUBJECT) or {}).get("StringValue")
        if not isinstance(sent, str) or not matches(subject, sent):
            return
        body = read_body(message.get("Body"), attributes, FieldReader())
        try:
            result = callback(body)
            if asyncio.iscoroutine(result):
                await result
        except Exception:
            log.exception("event callback for %s failed", subject)

    async def close(self) -> None:
        for unsubscribe in list(self._subscriptions):
            await unsubscribe()
        self._topic = None
