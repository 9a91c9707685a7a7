"""Topics over SNS to SQS: one SNS topic, an SQS queue per subscription.

Publishing. ``publish_topic`` publishes the body (the topic message JSON) to the SNS topic
:data:`SNS_TOPIC` with the concrete topic in the message attribute :data:`TOPIC_ATTRIBUTE`, and
returns once SNS took it. SNS keeps nothing itself: what it hands to no queue is gone.

Subscriptions. Each one is an SQS queue subscribed to that SNS topic with raw message delivery
(:mod:`.fanout`) and a filter policy on the attribute: the exact topic for a pattern without
wildcards, else the tokens before the first wildcard as a prefix (``orders.`` for
``orders.*``), so SNS sends the queue no message the pattern cannot match. SNS has no token
wildcards, so every message is still held to :func:`~orquestrador.topics.matches`.

- Live: the queue ``orq-live-<16 hex digits>`` (messages kept 5 minutes), deleted with its SNS
  subscription on unsubscribe or close. A process that dies leaves them behind; each live queue
  carries the tag :data:`ALIVE_TAG`, an epoch second its process pushes forward every
  :data:`HEARTBEAT` seconds, and the first live subscription of a connection (or ``orq``'s
  ``SqsBroker.reap_live_subscriptions``) deletes the live queues whose time has passed, and the
  SNS subscriptions left pointing at queues that are gone.
- Durable (``durable=NAME``): the queue ``orq-durable-NAME`` (:func:`.names.durable_queue`), kept
  14 days, SQS's longest; it stays subscribed after unsubscribe, so it receives while nobody
  listens, until ``delete_subscription(NAME)``. Processes subscribing under one name share
  its messages, each delivered to one of them; the last subscribe's pattern sets the filter.
  A message is deleted once :func:`~orquestrador.topics.delivery.deliver_durable` is done with
  it (the callback returned, or kept raising through its retries); its visibility timeout is
  pushed forward meanwhile, so a long callback's message stays hidden. Unsubscribing lets the
  delivery or the (short) long poll under way finish and hands back the rest of a batch at
  once, so a subscriber that comes back right away misses nothing and waits for nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Sequence
from typing import Any, Protocol

from orquestrador.brokers.base import TopicCallback, Unsubscribe
from orquestrador.brokers.intake import FieldReader
from orquestrador.brokers.sqs.errors import DRIVER_ERRORS, ClientError, is_missing_queue, mapped
from orquestrador.brokers.sqs.fanout import Subscribed, subscribe_queue, subscriptions
from orquestrador.brokers.sqs.names import ENCODING, LIVE_PREFIX, durable_queue, encode_body, read_body
from orquestrador.brokers.sqs.sender import MAX_BATCH_BYTES, entry_size
from orquestrador.errors import BrokerError, PayloadTooLarge
from orquestrador.topics import delivery
from orquestrador.topics.patterns import has_wildcards, literal_prefix, matches

log = logging.getLogger(__name__)

SNS_TOPIC = "orquestrador-topicos"
TOPIC_ATTRIBUTE = "orq-topico"
ALIVE_TAG = "orquestrador-alive-until"
DURABLE_TAG = "orquestrador-durable"
LIVE_RETENTION = 300  # seconds a live queue keeps what its subscriber has not received
DURABLE_RETENTION = 1_209_600  # 14 days
HEARTBEAT = 120  # seconds between pushes of a live queue's ALIVE_TAG
LIVE_TTL = 900  # how far each push sets it: a queue not pushed for this long is a dead process's
VISIBILITY = 60  # seconds a durable message stays hidden while its callback runs (pushed forward)
LIVE_POLL = 10  # seconds per long poll of a live queue (cut short on unsubscribe)
# ... and of a durable one, which unsubscribing lets finish: a poll cut short would leave what it
# took (on the server) hidden for VISIBILITY, out of reach of the next subscriber.
DURABLE_POLL = 2


class Host(Protocol):
    @property
    def sqs(self) -> Any: ...

    async def sns(self) -> Any: ...


def filter_policy(pattern: str) -> dict[str, Any]:
    """The SNS filter policy of ``pattern``: the exact topic, or the prefix before a wildcard."""
    if not has_wildcards(pattern):
        return {TOPIC_ATTRIBUTE: [pattern]}
    prefix = literal_prefix(pattern)
    return {TOPIC_ATTRIBUTE: [{"prefix": prefix + "."} if prefix else {"exists": True}]}


class SnsTopics:
    """The topics of one broker connection (see the module docstring)."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self._arn: str | None = None
        self._lock = asyncio.Lock()
        self._subscriptions: set[Unsubscribe] = set()
        self._reaper: asyncio.Task[None] | None = None

    async def topic(self) -> tuple[Any, str]:
        """The SNS client and the topics' SNS topic ARN (created on first use)."""
        sns = await self.host.sns()
        async with self._lock:
            if self._arn is None:
                with mapped(f"cannot create the SNS topic {SNS_TOPIC}"):
                    self._arn = str((await sns.create_topic(Name=SNS_TOPIC))["TopicArn"])
            return sns, self._arn

    async def publish(self, topic: str, body: bytes) -> None:
        entry = _entry(topic, body)
        if (size := entry_size(entry, "Message")) > MAX_BATCH_BYTES:
            raise PayloadTooLarge(
                f"message on topic {topic} is {size} bytes, over SNS's {MAX_BATCH_BYTES}-byte limit: "
                "publish a reference (a URL or a path) instead of the data"
            )
        sns, arn = await self.topic()
        with mapped(f"cannot publish on topic {topic}"):
            await sns.publish(TopicArn=arn, **entry)

    async def publish_many(self, items: Sequence[tuple[str, bytes]]) -> int:
        """PublishBatch, ten messages and 256 KiB a call (SNS's most), four calls at a time;
        returns how many failed, a message over the limit among them (logged at debug: the
        toolkit's own topics are best effort)."""
        try:
            sns, arn = await self.topic()
        except BrokerError as exc:
            log.debug("%d topic messages not sent: %s", len(items), exc)
            return len(items)
        limit = asyncio.Semaphore(4)

        async def batch(chunk: list[dict[str, Any]]) -> int:
            entries = [{"Id": str(i), **entry} for i, entry in enumerate(chunk)]
            async with limit:
                try:
                    with mapped(f"cannot publish {len(chunk)} topic messages"):
                        reply = await sns.publish_batch(TopicArn=arn, PublishBatchRequestEntries=entries)
                except BrokerError as exc:
                    log.debug("%s", exc)
                    return len(chunk)
            return len(reply.get("Failed", []))

        chunks, too_large = _chunks([_entry(t, b) for t, b in items])
        if too_large:
            log.debug("%d topic messages over SNS's %d-byte limit not sent", too_large, MAX_BATCH_BYTES)
        return too_large + sum(await asyncio.gather(*(batch(chunk) for chunk in chunks)))

    async def subscribe(self, pattern: str, callback: TopicCallback, *, durable: str | None) -> Unsubscribe:
        if durable is None and self._reaper is None:  # in the background: subscribing stays quick
            self._reaper = delivery.watched(self._reap_quietly(), "reaping live topic queues")
        subscription = Subscription(self, pattern, callback, durable)
        await subscription.open()
        subscription.start()

        async def unsubscribe() -> None:
            self._subscriptions.discard(unsubscribe)
            await subscription.stop()

        self._subscriptions.add(unsubscribe)
        return unsubscribe

    async def delete_subscription(self, durable: str) -> None:
        name = durable_queue(durable)
        sns, arn = await self.topic()
        sqs = self.host.sqs
        with mapped(f"cannot delete durable subscription {durable!r}"):
            try:
                url = str((await sqs.get_queue_url(QueueName=name))["QueueUrl"])
                reply = await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
            except ClientError as exc:
                if is_missing_queue(exc):
                    return
                raise
            endpoint = reply["Attributes"]["QueueArn"]
            for found in await subscriptions(sns, arn):
                if found.get("Endpoint") == endpoint:
                    await sns.unsubscribe(SubscriptionArn=found["SubscriptionArn"])
            await sqs.delete_queue(QueueUrl=url)

    async def reap(self) -> int:
        """Delete live queues whose :data:`ALIVE_TAG` has passed, and SNS subscriptions left
        pointing at live queues that are gone; returns how many queues went.

        Subscriptions are listed before queues (a subscription made meanwhile has its queue
        already, so it is never taken for a dangling one) and removed before their queues
        (SNS keeps nothing for a subscription whose queue is gone, and moto refuses to
        publish at all while one exists)."""
        sns, arn = await self.topic()
        sqs, now = self.host.sqs, time.time()
        with mapped("cannot list live topic queues"):
            subscribed = await subscriptions(sns, arn)
            urls = await _live_queues(sqs)
        stale: list[str] = []
        for url in urls:
            with contextlib.suppress(*DRIVER_ERRORS):  # deleted meanwhile: nothing to do
                until = str((await sqs.list_queue_tags(QueueUrl=url)).get("Tags", {}).get(ALIVE_TAG, ""))
                if until.isdigit() and int(until) < now:
                    stale.append(url)
        present = {url.rsplit("/", 1)[-1] for url in urls if url not in stale}
        for found in subscribed:
            queue = str(found.get("Endpoint", "")).rsplit(":", 1)[-1]
            if queue.startswith(LIVE_PREFIX) and queue not in present:
                with contextlib.suppress(*DRIVER_ERRORS):
                    await sns.unsubscribe(SubscriptionArn=found["SubscriptionArn"])
        for url in stale:
            with contextlib.suppress(*DRIVER_ERRORS):
                await sqs.delete_queue(QueueUrl=url)
                log.info("deleted %s, the live topic queue of a process that is gone", url)
        return len(stale)

    async def _reap_quietly(self) -> None:
        try:
            await self.reap()
        except BrokerError as exc:
            log.warning("cannot look for live topic queues of dead processes: %s", exc)

    async def close(self) -> None:
        for unsubscribe in list(self._subscriptions):
            await unsubscribe()
        if self._reaper is not None:
            await delivery.stop(self._reaper)
        self._arn = None


class Subscription:
    """One subscription's queue and the task that long-polls it."""

    def __init__(self, owner: SnsTopics, pattern: str, callback: TopicCallback, durable: str | None) -> None:
        self.owner, self.pattern, self.callback, self.durable = owner, pattern, callback, durable
        self.name = durable_queue(durable) if durable is not None else LIVE_PREFIX + uuid.uuid4().hex[:16]
        self.where = f"durable subscription {durable!r}" if durable else f"live subscription {pattern}"
        self.made: Subscribed | None = None
        self._task: asyncio.Task[None] | None = None
        self.gate = delivery.Gate()  # a durable one stops between deliveries, not inside one
        self._pushed = time.monotonic()

    @property
    def url(self) -> str:
        if self.made is None:
            raise BrokerError(f"{self.where} is not open")
        return self.made.url

    async def open(self) -> None:
        sns, arn = await self.owner.topic()
        if self.durable is not None:
            attributes = {"MessageRetentionPeriod": str(DURABLE_RETENTION),
                          "VisibilityTimeout": str(VISIBILITY)}  # fmt: skip
            tags = {DURABLE_TAG: self.durable}
        else:
            attributes = {"MessageRetentionPeriod": str(LIVE_RETENTION)}
            tags = {ALIVE_TAG: str(int(time.time()) + LIVE_TTL)}
        self.made = await subscribe_queue(
            sns, self.owner.host.sqs, arn, self.name, attributes=attributes, tags=tags,
            filter_policy=filter_policy(self.pattern), fresh=self.durable is None,
        )  # fmt: skip

    def start(self) -> None:
        self._task = delivery.watched(self._pump(), self.where)

    async def stop(self) -> None:
        """Live: at once, and the queue goes. Durable: once the delivery (then the long poll)
        under way is over, what the batch holds beyond it handed back; the queue stays. A poll is
        not cut short: what it took on the server would stay hidden from the next subscriber."""
        await self.gate.close()
        task = self._task
        if task is not None:
            if self.durable is not None:
                with contextlib.suppress(asyncio.CancelledError, TimeoutError, Exception):
                    await asyncio.wait_for(asyncio.shield(task), DURABLE_POLL + 5)
            await delivery.stop(task)
        if self.durable is None and self.made is not None:
            try:
                sns, sqs = await self.owner.host.sns(), self.owner.host.sqs
            except BrokerError:  # closed already: the next live subscriber reaps the queue
                return
            with contextlib.suppress(*DRIVER_ERRORS):
                await sns.unsubscribe(SubscriptionArn=self.made.subscription)
            with contextlib.suppress(*DRIVER_ERRORS):
                await sqs.delete_queue(QueueUrl=self.made.url)

    async def _pump(self) -> None:
        failures = 0
        while not self.gate.stopping:
            try:
                messages = await self._receive()
                failures = 0
            except (BrokerError, *DRIVER_ERRORS) as exc:
                failures += 1
                await self._recover(exc, failures)
                continue
            if self.durable is None:
                await self._live(messages)
            else:
                await self._durable(messages)

    async def _receive(self) -> list[dict[str, Any]]:
        sqs = self.owner.host.sqs
        if self.durable is None and time.monotonic() - self._pushed > HEARTBEAT:
            await sqs.tag_queue(QueueUrl=self.url, Tags={ALIVE_TAG: str(int(time.time()) + LIVE_TTL)})
            self._pushed = time.monotonic()
        reply = await sqs.receive_message(
            QueueUrl=self.url, MaxNumberOfMessages=10, MessageAttributeNames=["All"],
            WaitTimeSeconds=LIVE_POLL if self.durable is None else DURABLE_POLL,
        )  # fmt: skip
        messages: list[dict[str, Any]] = reply.get("Messages", [])
        return messages

    async def _recover(self, exc: BaseException, failures: int) -> None:
        """Log a failed receive (the first, the tenth, then every hundredth) and wait; a queue
        deleted behind its back is made and subscribed again."""
        cause = exc.__cause__ if isinstance(exc, BrokerError) and exc.__cause__ else exc
        if failures in (1, 10) or failures % 100 == 0:
            log.warning("%s: receive failed (%s); retrying", self.where, exc)
        await asyncio.sleep(min(5.0, 0.2 * failures))
        if is_missing_queue(cause):
            log.warning("%s: its queue %s was deleted; subscribing a new one", self.where, self.name)
            if self.durable is None and self.made is not None:  # AWS keeps a deleted name 60 s
                self.name = LIVE_PREFIX + uuid.uuid4().hex[:16]
                with contextlib.suppress(*DRIVER_ERRORS):
                    await (await self.owner.host.sns()).unsubscribe(SubscriptionArn=self.made.subscription)
            with contextlib.suppress(BrokerError):
                await self.open()

    async def _live(self, messages: list[dict[str, Any]]) -> None:
        """Deleted first, then delivered: a live subscription is lossy by definition."""
        if messages:
            await self._delete(messages)
        for message in messages:
            if (body := self._read(message)) is not None:
                await delivery.deliver_live(self.pattern, body, self.callback)

    async def _durable(self, messages: list[dict[str, Any]]) -> None:
        for i, message in enumerate(messages):
            if self.gate.stopping:  # unsubscribed meanwhile: hand the rest back for whoever is next
                await self._hide(messages[i:], 0)
                return
            async with self.gate.delivery():
                if (body := self._read(message)) is not None:
                    durable = str(self.durable)
                    await self._held(
                        message, delivery.deliver_durable(self.pattern, body, self.callback, durable)
                    )
                await self._delete([message])

    def _read(self, message: dict[str, Any]) -> bytes | None:
        """The body, unless the topic attribute already says the pattern does not match (what
        an earlier pattern of a durable name let in)."""
        attributes = message.get("MessageAttributes") or {}
        sent = (attributes.get(TOPIC_ATTRIBUTE) or {}).get("StringValue")
        if isinstance(sent, str) and not matches(self.pattern, sent):
            return None
        return read_body(message.get("Body"), attributes, FieldReader())

    async def _held(self, message: dict[str, Any], delivery: Awaitable[None]) -> None:
        """``delivery`` awaited, the message kept hidden while it runs."""
        task = asyncio.ensure_future(delivery)
        while True:
            done, _ = await asyncio.wait({task}, timeout=VISIBILITY / 2)
            if done:
                return task.result()
            await self._hide([message], VISIBILITY)

    async def _delete(self, messages: list[dict[str, Any]]) -> None:
        await self._batch("delete_message_batch", messages, {})

    async def _hide(self, messages: list[dict[str, Any]], seconds: int) -> None:
        await self._batch("change_message_visibility_batch", messages, {"VisibilityTimeout": seconds})

    async def _batch(self, call: str, messages: list[dict[str, Any]], extra: dict[str, int]) -> None:
        entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], **extra}
                   for i, m in enumerate(messages)]  # fmt: skip
        try:
            with mapped(f"{self.where}: {call} failed"):
                reply = await getattr(self.owner.host.sqs, call)(QueueUrl=self.url, Entries=entries)
        except BrokerError as exc:
            log.warning("%s (%d messages come back after their visibility timeout)", exc, len(entries))
            return
        if reply.get("Failed"):
            log.warning("%s: %s failed for %d messages", self.where, call, len(reply["Failed"]))


async def _live_queues(sqs: Any) -> list[str]:
    """The URLs of every live subscription's queue (paged by SQS, 1,000 at a time)."""
    urls: list[str] = []
    token: str | None = None
    while True:
        page = {"NextToken": token} if token else {}
        reply = await sqs.list_queues(QueueNamePrefix=LIVE_PREFIX, MaxResults=1000, **page)
        urls += reply.get("QueueUrls", [])
        token = reply.get("NextToken")
        if not token:
            return urls


def _entry(topic: str, body: bytes) -> dict[str, Any]:
    """An SNS Publish(Batch) message: the body as text, the topic (and any base64) in attributes."""
    text, base64_body = encode_body(body)
    attributes = {TOPIC_ATTRIBUTE: {"DataType": "String", "StringValue": topic}}
    if base64_body:
        attributes[ENCODING] = {"DataType": "String", "StringValue": "base64"}
    return {"Message": text, "MessageAttributes": attributes}


def _chunks(entries: list[dict[str, Any]]) -> tuple[list[list[dict[str, Any]]], int]:
    """``entries`` in PublishBatch calls (ten and 256 KiB at most each), and how many are too
    large for any."""
    chunks: list[list[dict[str, Any]]] = []
    size, too_large = MAX_BATCH_BYTES, 0
    for entry in entries:
        n = entry_size(entry, "Message")
        if n > MAX_BATCH_BYTES:
            too_large += 1
            continue
        if size + n > MAX_BATCH_BYTES or len(chunks[-1]) == 10:
            chunks.append([])
            size = 0
        chunks[-1].append(entry)
        size += n
    return chunks, too_large
