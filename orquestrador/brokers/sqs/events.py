"""Best-effort events over SNS: one topic, a throwaway SQS queue per subscription.

``publish_event`` publishes to the SNS topic :data:`TOPIC` with the subject in the message
attribute :data:`SUBJECT`. ``subscribe_events`` creates an SQS queue ``orq-events-<random>``
(messages kept 60 s, SQS's least), subscribes it to the topic with raw message delivery, and
long-polls it; subjects are matched here, NATS-style (``*`` one token, ``>`` the rest).
Unsubscribing (or closing the broker) removes the subscription and the queue; a process killed
meanwhile leaves them behind, holding at most a minute of events (``orq-events-`` names them).

This is also the hook for the topics feature (DESIGN.md, "Topics"): a durable named
subscription would be the same SNS subscription on a queue named after it, kept on unsubscribe.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from orquestrador.brokers.base import EventCallback
from orquestrador.brokers.intake import FieldReader
from orquestrador.brokers.sqs.errors import DRIVER_ERRORS, mapped
from orquestrador.brokers.sqs.names import ENCODING, encode_body, read_body
from orquestrador.errors import BrokerError

log = logging.getLogger(__name__)

TOPIC = "orquestrador-events"
SUBJECT = "orq-subject"
QUEUE_PREFIX = "orq-events-"
POLL = 10  # seconds per long poll of a subscription's queue


class Host(Protocol):
    @property
    def sqs(self) -> Any: ...

    async def create_client(self, service: str, stack: contextlib.AsyncExitStack) -> Any: ...


def matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` is one token, a final ``>`` one or more."""
    want, have = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(have) > i
        if i >= len(have) or (token != "*" and token != have[i]):
            return False
    return len(want) == len(have)


class SnsEvents:
    """The events of one broker connection (see the module docstring)."""

    def __init__(self, host: Host) -> None:
        self._host = host
        self._stack = contextlib.AsyncExitStack()
        self._sns: Any = None
        self._topic: str | None = None
        self._lock = asyncio.Lock()
        self._subscriptions: set[Callable[[], Awaitable[None]]] = set()

    async def _topic_arn(self) -> tuple[Any, str]:
        async with self._lock:
            if self._sns is None:
                self._sns = await self._host.create_client("sns", self._stack)
            if self._topic is None:
                with mapped("cannot create the SNS events topic"):
                    self._topic = str((await self._sns.create_topic(Name=TOPIC))["TopicArn"])
            return self._sns, self._topic

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
        with mapped(f"cannot subscribe to {subject}"):
            reply = await sqs.create_queue(QueueName=name, Attributes={"MessageRetentionPeriod": "60"})
            url = str(reply["QueueUrl"])
            reply = await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
            arn = reply["Attributes"]["QueueArn"]
            policy = {"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"Service": "sns.amazonaws.com"}, "Action": "sqs:SendMessage",
                "Resource": arn, "Condition": {"ArnEquals": {"aws:SourceArn": topic}},
            }]}  # fmt: skip
            await sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(policy)})
            reply = await sns.subscribe(
                TopicArn=topic, Protocol="sqs", Endpoint=arn, ReturnSubscriptionArn=True,
                Attributes={"RawMessageDelivery": "true"},
            )  # fmt: skip
        subscription = str(reply["SubscriptionArn"])
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
        with contextlib.suppress(*DRIVER_ERRORS):
            await self._stack.aclose()
        self._sns, self._topic = None, None
