"""The SQS broker: the client, publishing, queues and inspection (see :mod:`orquestrador.brokers.sqs`
for the mapping)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session

from orquestrador.brokers.base import (
    DLQ_SUFFIX,
    Broker,
    Capabilities,
    Consumer,
    Delivery,
    EventCallback,
    Message,
    QueueStats,
    TopicCallback,
    Unsubscribe,
    dlq_of,
)
from orquestrador.brokers.intake import FieldReader
from orquestrador.brokers.shared import SharedState
from orquestrador.brokers.sqs.consumer import SYSTEM_ATTRIBUTES, SqsConsumer, SqsDelivery
from orquestrador.brokers.sqs.errors import (
    DRIVER_ERRORS,
    ClientError,
    code_of,
    is_missing_queue,
    mapped,
    unreachable,
)
from orquestrador.brokers.sqs.events import SnsEvents
from orquestrador.brokers.sqs.names import (
    NAME_TAG,
    encode_body,
    message_attributes,
    read_body,
    read_headers,
    short_id,
    sqs_name,
)
from orquestrador.brokers.sqs.sender import Sender
from orquestrador.brokers.sqs.shared import SqsState
from orquestrador.brokers.sqs.topics import SnsTopics
from orquestrador.brokers.support.limits import DlqLimits
from orquestrador.errors import BrokerError, ConfigError
from orquestrador.settings import redact_url

log = logging.getLogger(__name__)

RETENTION = 1_209_600  # 14 days, SQS's longest: a job queue never drops a job by age
MIN_RETENTION = 60
DEFAULT_MAX_RECEIVES = 50  # the redrive policy's safety net, far above any max_tentativas
PEEK_HOLD = 5  # seconds peeked messages are hidden before being made visible again
OPTIONS = ("endpoint_url", "fifo", "max_receives")
_EXISTS = {"QueueAlreadyExists", "QueueNameExists"}


class SqsBroker(Broker):
    """AWS SQS (or an SQS-compatible server) through aiobotocore; see the package docstring."""

    scheme = "sqs"
    display_name = "SQS"
    host_required = False  # sqs:// takes its region from the AWS environment
    # Standard queues; a ?fifo=true broker drops duplicate ids on the server (see deduplicated).
    capabilities = Capabilities.lacking(
        "server_dedup", "positions", "side_effect_free_peek", "shared_slots", "oldest_age",
        "counts_reconnects",
    )  # fmt: skip
    # Its long polls are whole seconds and every receive is billed: empty priority lanes are
    # looked at once a second, not ten times (an idle worker: three receives a second, not thirty).
    lane_poll = 1.0

    def __init__(self, url: str) -> None:
        super().__init__(url)
        parts = urlsplit(self.plain_url)
        where = redact_url(url)
        if parts.username or parts.password:
            raise ConfigError(
                f"{where}: sqs:// URLs never carry credentials; they come from the AWS chain "
                "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or an instance or task role)"
            )
        if parts.port is not None:
            raise ConfigError(
                f"{where}: the host of an sqs:// URL is a region; give a server as ?endpoint_url="
            )
        query = dict(parse_qsl(parts.query))
        unknown = sorted(set(query) - set(OPTIONS))
        if unknown:
            raise ConfigError(f"unknown option(s) {unknown} in {where}: sqs:// takes {', '.join(OPTIONS)}")
        self.region: str | None = parts.hostname or None
        self.endpoint_url: str | None = query.get("endpoint_url") or None
        self.fifo = _flag(query.get("fifo", "false"), "fifo", where)
        receives = query.get("max_receives", str(DEFAULT_MAX_RECEIVES))
        if not receives.isdigit() or not 1 <= int(receives) <= 1000:
            raise ConfigError(f"invalid max_receives {receives!r} in {where}: a whole number from 1 to 1000")
        self.max_receives = int(receives)
        self.dlq = DlqLimits.from_env()
        self._session: AioSession | None = None
        self._client: Any = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._urls: dict[str, str] = {}
        self._sender = Sender(self._send_batch)
        self._sns: Any = None
        self._sns_lock = asyncio.Lock()
        self._events = SnsEvents(self)
        self._state: SqsState | None = None
        self._topics = SnsTopics(self)

    @property
    def where(self) -> str:
        return self.endpoint_url or f"region {self.region or '(from the AWS environment)'}"

    @property
    def sqs(self) -> Any:
        if self._client is None:
            raise self.not_connected()
        return self._client

    def client_options(self) -> dict[str, Any]:
        config = AioConfig(
            connect_timeout=5, read_timeout=30, max_pool_connections=64,
            retries={"max_attempts": 4, "mode": "standard"},
        )  # fmt: skip
        return {"region_name": self.region, "endpoint_url": self.endpoint_url, "config": config}

    async def create_client(self, service: str, stack: contextlib.AsyncExitStack) -> Any:
        """A client of ``service`` (sqs, sns) in this broker's session, closed with ``stack``."""
        if self._session is None:
            self._session = get_session()
        return await stack.enter_async_context(self._session.create_client(service, **self.client_options()))

    async def sns(self) -> Any:
        """The SNS client of this connection (events and topics), made on first use."""
        stack = self._stack
        if stack is None:
            raise self.not_connected()
        async with self._sns_lock:
            if self._sns is None:
                with mapped("cannot make an SNS client"):
                    self._sns = await self.create_client("sns", stack)
            return self._sns

    async def connect(self) -> None:
        if self._client is not None:
            return
        stack = contextlib.AsyncExitStack()
        try:
            client = await self.create_client("sqs", stack)
            try:
                await client.list_queues(MaxResults=1)  # the endpoint answers, the credentials work
            except ClientError as exc:
                if code_of(exc) not in ("AccessDenied", "AccessDeniedException"):
                    raise  # a role without sqs:ListQueues may still use its queues
        except DRIVER_ERRORS as exc:
            await stack.aclose()
            raise unreachable(exc, self.where) from None
        self._client, self._stack = client, stack
        if self.dlq.max_messages:
            log.warning("ORQ_DLQ_MAX_MESSAGES is not applied on SQS (it caps queues by age only)")

    async def close(self) -> None:
        await self._events.close()
        await self._topics.close()
        stack, self._stack, self._client, self._sns = self._stack, None, None, None
        if stack is not None:
            with contextlib.suppress(*DRIVER_ERRORS):
                await stack.aclose()

    # -- queues ------------------------------------------------------------------------------

    async def _declare_new(self, names: list[str]) -> None:
        for name in sorted(names, key=lambda n: not n.endswith(DLQ_SUFFIX)):  # the DLQ first: its ARN
            self._urls[name] = await self._create(name)

    async def _create(self, name: str) -> str:
        physical = sqs_name(name, fifo=self.fifo)
        attributes = {"MessageRetentionPeriod": str(RETENTION)}
        if self.fifo:
            attributes["FifoQueue"] = "true"
        if name.endswith(DLQ_SUFFIX):
            if self.dlq.max_age:
                kept = max(MIN_RETENTION, min(RETENTION, int(self.dlq.max_age)))
                attributes["MessageRetentionPeriod"] = str(kept)
        else:
            dlq = dlq_of(name)
            dlq_arn = await self._arn(self._urls.get(dlq) or await self.url_of(dlq))
            policy = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(self.max_receives)}
            attributes["RedrivePolicy"] = json.dumps(policy)
        with mapped(f"cannot declare {name}"):
            try:
                reply = await self.sqs.create_queue(
                    QueueName=physical, Attributes=attributes, tags={NAME_TAG: name}
                )
                return str(reply["QueueUrl"])
            except ClientError as exc:
                if code_of(exc) not in _EXISTS:
                    raise
            url = str((await self.sqs.get_queue_url(QueueName=physical))["QueueUrl"])
            await self.sqs.tag_queue(QueueUrl=url, Tags={NAME_TAG: name})
        log.warning("SQS queue %s exists with other attributes; using it as it is", physical)
        return url

    async def _arn(self, url: str) -> str:
        with mapped("cannot read a queue's ARN"):
            reply = await self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        return str(reply["Attributes"]["QueueArn"])

    async def url_of(self, queue: str) -> str:
        """The queue's URL, declaring it (and its DLQ) first if this connection has not."""
        await self.declare(queue)
        url = self._urls.get(queue)
        if url is None:
            with mapped(f"cannot find {queue}"):
                reply = await self.sqs.get_queue_url(QueueName=sqs_name(queue, fifo=self.fifo))
            url = self._urls[queue] = str(reply["QueueUrl"])
        return url

    async def redeclare(self, queue: str) -> None:
        """It was deleted behind this connection's back (with its DLQ, as ``delete`` does): create
        both again."""
        for name in {queue, dlq_of(queue)}:
            self.forget(name)
            self._urls.pop(name, None)
        await self.declare(queue)

    # -- publishing --------------------------------------------------------------------------

    async def publish(
        self, queue: str, body: bytes, *, message_id: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        await self.deduplicated(queue, message_id, lambda: self.send(queue, body, message_id=message_id,
                                                                     headers=headers))  # fmt: skip

    async def deduplicated(
        self, queue: str, message_id: str | None, send: Callable[[], Awaitable[None]]
    ) -> None:
        """A FIFO queue drops a repeated MessageDeduplicationId (= message_id) on the server."""
        if self.fifo:
            await send()
        else:
            await super().deduplicated(queue, message_id, send)

    async def send(
        self, queue: str, body: bytes, *, message_id: str | None = None,
        headers: dict[str, str] | None = None, group: str | None = None,
    ) -> None:  # fmt: skip
        """One SendMessage (batched with its neighbours, :mod:`.sender`), without the dedup check."""
        text, base64_body = encode_body(body)
        entry: dict[str, Any] = {"MessageBody": text}
        if attributes := message_attributes(headers, message_id, base64_body):
            entry["MessageAttributes"] = attributes
        if self.fifo:
            entry["MessageGroupId"] = short_id(group or _correlation_id(body) or message_id or "orquestrador")
            entry["MessageDeduplicationId"] = short_id(message_id) if message_id else uuid.uuid4().hex
        try:
            await self._sender.send(await self.url_of(queue), entry)
        except BrokerError as exc:
            if not is_missing_queue(exc.__cause__ or exc):
                raise
            await self.redeclare(queue)
            await self._sender.send(await self.url_of(queue), entry)

    async def _send_batch(self, url: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
        reply: dict[str, Any] = await self.sqs.send_message_batch(QueueUrl=url, Entries=entries)
        return reply

    async def ack_many(self, deliveries: Sequence[Delivery]) -> int:
        """DeleteMessageBatch, ten at a time, instead of one call per message."""
        by_url: dict[str, list[SqsDelivery]] = {}
        for delivery in deliveries:
            if not isinstance(delivery, SqsDelivery):
                raise TypeError(f"not an SQS delivery: {delivery!r}")
            by_url.setdefault(delivery._url, []).append(delivery)
        chunks = [(url, group[i : i + 10]) for url, group in by_url.items() for i in range(0, len(group), 10)]
        failed = await asyncio.gather(*(self._delete_batch(url, chunk) for url, chunk in chunks))
        return sum(failed)

    async def _delete_batch(self, url: str, chunk: list[SqsDelivery]) -> int:
        entries = [{"Id": str(i), "ReceiptHandle": d.receipt} for i, d in enumerate(chunk)]
        try:
            with mapped("ack of a batch failed"):
                reply = await self.sqs.delete_message_batch(QueueUrl=url, Entries=entries)
        except BrokerError as exc:
            log.warning("acks of %d messages failed: %s", len(chunk), exc)
            return len(chunk)
        return len(reply.get("Failed", []))

    # -- consuming and inspection ------------------------------------------------------------

    async def consume(self, queue: str, *, visibility_timeout: float = 30.0, prefetch: int = 16) -> Consumer:
        await self.declare(queue)
        return SqsConsumer(self, queue, visibility_timeout)

    async def _counts(self, queue: str) -> tuple[int, int, int]:
        """(visible, in flight, delayed) from the queue's attributes."""
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                 "ApproximateNumberOfMessagesDelayed"]  # fmt: skip
        with mapped(f"cannot read stats of {queue}"):
            url = await self.url_of(queue)
            reply = await self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)
        values = reply.get("Attributes", {})
        visible, hidden, delayed = (int(values.get(name, 0)) for name in names)
        return visible, hidden, delayed

    async def stats(self, queue: str) -> QueueStats:
        is_dlq = queue.endswith(DLQ_SUFFIX)
        own = self._counts(queue)
        if is_dlq:
            (visible, hidden, delayed), dead = await own, 0
        else:
            (visible, hidden, delayed), counts = await asyncio.gather(own, self._counts(dlq_of(queue)))
            dead = sum(counts)
        return QueueStats(queue=queue, depth=visible + delayed, in_flight=hidden, dead_letters=dead)

    async def peek(self, queue: str, limit: int = 10) -> list[Message]:
        """Received and made visible again at once: each peek adds one to the receive count."""
        url = await self.url_of(queue)
        seen: list[dict[str, Any]] = []
        try:
            while len(seen) < limit:
                with mapped(f"cannot peek {queue}"):
                    reply = await self.sqs.receive_message(
                        QueueUrl=url, MaxNumberOfMessages=min(10, limit - len(seen)), WaitTimeSeconds=0,
                        VisibilityTimeout=PEEK_HOLD, MessageSystemAttributeNames=SYSTEM_ATTRIBUTES,
                        MessageAttributeNames=["All"],
                    )  # fmt: skip
                batch = reply.get("Messages", [])
                if not batch:
                    break
                seen += batch
        finally:
            await self._release(url, [m["ReceiptHandle"] for m in seen])
        seen.sort(key=_sent_order)
        out = []
        for m in seen:
            reader, attributes = FieldReader(), m.get("MessageAttributes") or {}
            body = read_body(m.get("Body"), attributes, reader)
            out.append(Message(body, read_headers(attributes, reader), str(m.get("MessageId", ""))))
        return out

    async def _release(self, url: str, receipts: list[str]) -> None:
        for i in range(0, len(receipts), 10):
            entries = [{"Id": str(n), "ReceiptHandle": r, "VisibilityTimeout": 0}
                       for n, r in enumerate(receipts[i : i + 10])]  # fmt: skip
            try:
                with mapped("cannot make peeked messages visible again"):
                    await self.sqs.change_message_visibility_batch(QueueUrl=url, Entries=entries)
            except BrokerError as exc:
                log.warning("%s; they return in %d s", exc, PEEK_HOLD)

    async def purge(self, queue: str) -> int:
        """Received and deleted ten at a time (PurgeQueue works once a minute, and not at once)."""
        url = await self.url_of(queue)
        dropped, wait = 0, 0
        while True:
            with mapped(f"cannot purge {queue}"):
                reply = await self.sqs.receive_message(
                    QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=wait, VisibilityTimeout=30
                )
                batch = reply.get("Messages", [])
                if not batch:
                    if wait:
                        return dropped
                    wait = 1  # one more look, a long poll, before calling the queue empty
                    continue
                entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)]
                reply = await self.sqs.delete_message_batch(QueueUrl=url, Entries=entries)
            dropped += len(batch) - len(reply.get("Failed", []))

    async def delete(self, queue: str) -> None:
        for name in (queue, dlq_of(queue)):
            self.forget(name)
            self.forget_ids(name)
            url = self._urls.pop(name, None)
            with mapped(f"cannot delete {name}"):
                try:
                    if url is None:
                        reply = await self.sqs.get_queue_url(QueueName=sqs_name(name, fifo=self.fifo))
                        url = str(reply["QueueUrl"])
                    await self.sqs.delete_queue(QueueUrl=url)
                except ClientError as exc:
                    if not is_missing_queue(exc):
                        raise

    def shared_state(self) -> SharedState:
        if self._state is None:
            self._state = SqsState(self)
        return self._state

    async def queues(self) -> list[str]:
        """Queues carrying the toolkit's name tag (one ListQueueTags per queue of the account)."""
        urls: list[str] = []
        token: str | None = None
        with mapped("cannot list queues"):
            while True:
                reply = await self.sqs.list_queues(MaxResults=1000, **({"NextToken": token} if token else {}))
                urls += reply.get("QueueUrls", [])
                token = reply.get("NextToken")
                if not token:
                    break
        limit = asyncio.Semaphore(8)

        async def name_of(url: str) -> str | None:
            async with limit:
                try:
                    with mapped("cannot read a queue's tags"):
                        tags = (await self.sqs.list_queue_tags(QueueUrl=url)).get("Tags", {})
                except BrokerError:
                    return None  # deleted meanwhile, or not ours to read
            name = tags.get(NAME_TAG)
            return name if isinstance(name, str) else None

        names = await asyncio.gather(*(name_of(url) for url in urls))
        return sorted(name for name in names if name)

    # -- events ------------------------------------------------------------------------------

    async def publish_event(self, subject: str, body: bytes) -> None:
        if self._client is not None:
            await self._events.publish(subject, body)

    async def subscribe_events(self, subject: str, callback: EventCallback) -> Callable[[], Awaitable[None]]:
        return await self._events.subscribe(subject, callback)

    # -- topics (see .topics) ----------------------------------------------------------------

    async def publish_topic(self, topic: str, body: bytes) -> None:
        await self._topics.publish(topic, body)

    async def publish_topics(self, items: Sequence[tuple[str, bytes]]) -> int:
        return await self._topics.publish_many(items)

    async def subscribe_topic(
        self, pattern: str, callback: TopicCallback, *, durable: str | None = None
    ) -> Unsubscribe:
        return await self._topics.subscribe(pattern, callback, durable=durable)

    async def delete_subscription(self, durable: str) -> None:
        """Its queue and SNS subscription go, with what the queue held."""
        await self._topics.delete_subscription(durable)

    async def reap_live_subscriptions(self) -> int:
        """Delete the queues of live subscriptions whose process died (see .topics); returns how many."""
        return await self._topics.reap()


def _flag(value: str, name: str, where: str) -> bool:
    lowered = value.lower()
    if lowered not in ("true", "false", "1", "0", "yes", "no"):
        raise ConfigError(f"invalid {name}={value!r} in {where}: use true or false")
    return lowered in ("true", "1", "yes")


def _correlation_id(body: bytes) -> str | None:
    """The chain a FIFO message belongs to (its group), read from the envelope if it is one."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None
    value = data.get("correlation_id") if isinstance(data, dict) else None
    return value if isinstance(value, str) and value else None


def _sent_order(message: dict[str, Any]) -> tuple[int, int]:
    system = message.get("Attributes") or {}
    sent, sequence = str(system.get("SentTimestamp", "0")), str(system.get("SequenceNumber", "0"))
    return (int(sent) if sent.isdigit() else 0, int(sequence) if sequence.isdigit() else 0)


__all__ = ["SqsBroker"]
