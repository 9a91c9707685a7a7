"""RabbitMQ adapter (pika's asyncio connection adapter).

Mapping. Every queue is a durable classic queue of the same name on the default exchange, so
the routing key is the queue name, as in the interface note, and a message published there by
hand with plain pika is a job. Messages are persistent (delivery_mode 2) and ``publish`` returns
once the broker's publisher confirm arrived; confirms are pipelined (one future per delivery tag
on one confirm channel, see :mod:`.rabbitmq_channel`), so ``publish_many`` keeps hundreds in
flight. ``<queue>.dlq`` is a second durable queue: ``dead_letter`` publishes the body there with
``dead_letter_headers`` (confirmed) and only then acks. A queue that already exists with other
properties (e.g. non-durable, declared as in the interface note) is used as it is, with one
warning: the 406 closes the channel, a new one declares it passively.

Threading. No extra thread: pika's ``AsyncioConnection`` runs on the event loop that called
``connect()`` and its callbacks resolve futures there, so a broker belongs to that loop (the
sync facade gives it its own). One connection carries a confirm channel for publishing, an admin
channel for declares and stats, and one channel per consumer, so closing a consumer, or a worker
dying, hands exactly its unacked messages back to the queue.

Attempts. Classic queues keep no delivery count (quorum queues do, but there every peek adds
one to it for good, and their counters lag right after a requeue), so the consumer restamps
redelivered messages (:mod:`.support.attempts`: the ``x-orq-attempts`` header, a counted copy
then an ack of the original). The broker marks every message it hands out again as redelivered
(``nack()``, an expired lease, a consumer that died or lost its connection), so repeated crashes
count too. Dead-letter queues are not restamped.

Leases. RabbitMQ itself only redelivers when a channel closes, so each fetched delivery gets the
client-side lease of :mod:`.support.lease`; when one expires the adapter nacks it back to the
queue (if its consumer is not fetching at that moment, the consumer first cancels its
subscription so that another consumer gets it). Messages prefetched but never fetched (a
consumer closing or pausing) go back as copies with their count unchanged, so they do not count
an attempt nobody made.

Delayed retry. ``nack(delay)`` uses the delay buckets of :mod:`.support.delays`: the bucket
``<queue>.retry.<ms>`` is a durable queue with ``x-message-ttl`` = ms that dead-letters to
``""``/``<queue>``, and ``x-expires`` removes it ten minutes after its last use.

Registry. AMQP 0-9-1 cannot list queues and the management plugin may be off, so each name this
toolkit declares is recorded as a message (``+q``; ``~q.retry.N`` for a bucket) in ``orq.queues``,
a durable queue with a single active consumer, so readers take turns. ``queues()`` and
``delete()`` append a marker, read up to it, ack away duplicates and names whose queue is gone
(passive declare), and close the channel, which puts the rest back in place.

Inspection. ``depth`` and ``consumers`` come from a passive declare, ``dead_letters`` from the
dlq's; ``in_flight`` counts this process's unsettled deliveries on the queue (fetched, buffered
or being restamped); other processes' unacked messages are invisible without the management
API. These and ``peek`` first wait for this broker's publishes still in flight, so a process
reads its own writes. ``peek`` has no browse in AMQP 0-9-1: it ``basic_get``s up to ``limit`` messages on a
separate channel and closes it, which puts them back in place but marks them redelivered, so
when they are consumed they count one more attempt and go to the back. ``oldest_age`` is None.

Connection loss. The connection is re-opened with exponential backoff (0.2 s to 5 s, jittered).
Publishes that lost their channel before the confirm are sent again (so a duplicate is possible,
as with every at-least-once broker; ``message_id`` tells) or raise BrokerError after
``publish_timeout``. ``publish`` with a ``message_id`` already published by this connection in
the last 120 s is dropped (:mod:`.dedup`; RabbitMQ has no server-side dedup, so another
connection's copy is delivered); consumers subscribe again on their next fetch; event subscriptions are
re-bound. Deliveries of the lost channel went back to the queue: acking them raises BrokerError.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pika
import pika.exceptions
from pika import spec
from pika.adapters.asyncio_connection import AsyncioConnection
from pika.adapters.utils.connection_workflow import AMQPConnectorException  # TLS handshake failures

from orquestrador.brokers.base import (
    DLQ_SUFFIX,
    Broker,
    Capabilities,
    Consumer,
    EventCallback,
    Message,
    QueueStats,
    dlq_of,
    validate_queue_name,
)
from orquestrador.brokers.rabbitmq_channel import (
    NOT_FOUND,
    PRECONDITION_FAILED,
    RESOURCE_LOCKED,
    AsyncChannel,
    ChannelClosed,
    ConfirmPublisher,
    EventsChannel,
    Nacked,
    RabbitMQConsumer,
    RabbitMQDelivery,
    Returned,
    T,
    open_connection,
    public_headers,
    short_reason,
    translate,
)
from orquestrador.brokers.support.attempts import ATTEMPTS_HEADER
from orquestrador.brokers.support.delays import BUCKET_GRACE_MS, bucket_ms, bucket_name
from orquestrador.brokers.support.limits import DlqLimits
from orquestrador.brokers.tls import ssl_context, tls_failure
from orquestrador.errors import BrokerError, BrokerUnavailable, ConfigError
from orquestrador.settings import redact_url, split_tls

log = logging.getLogger(__name__)

# pika logs each expected failure (a refused connection, a 406 handled here) at ERROR, many lines
# deep; this adapter reports each failure in one line, so pika stays quiet unless configured.
if logging.getLogger("pika").level == logging.NOTSET:
    logging.getLogger("pika").setLevel(logging.CRITICAL)

REGISTRY = "orq.queues"
PERSISTENT = spec.BasicProperties(delivery_mode=2)
_LOGIN_REFUSED = (pika.exceptions.ProbableAuthenticationError, pika.exceptions.ProbableAccessDeniedError)


class RabbitMQBroker(Broker):
    """One AMQP connection (``amqp://`` or ``amqps://``) on the running loop; see the module docstring."""

    scheme = "amqp"
    # What RabbitMQ lacks, this adapter supplies (see the module docstring); peek, in_flight,
    # oldest_age and slots stay as AMQP 0-9-1 allows.
    capabilities = Capabilities.lacking(
        "server_dedup", "delivery_count", "server_lease", "delayed_redelivery", "positions",
        "side_effect_free_peek", "shared_slots", "global_in_flight", "oldest_age",
    )  # fmt: skip

    def __init__(self, url: str, *, connect_timeout: float = 10.0, publish_timeout: float = 30.0) -> None:
        self.url = url
        self.connect_timeout = connect_timeout
        self.publish_timeout = publish_timeout
        plain_url, tls = split_tls(url)
        try:
            self._params = pika.URLParameters(plain_url)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"invalid RabbitMQ URL {redact_url(url)}: {type(exc).__name__}") from None
        if tls is not None:
            self._params.ssl_options = pika.SSLOptions(ssl_context(tls), server_hostname=self._params.host)
        self._params.client_properties = {"connection_name": "orquestrador"}
        self.consumers: set[RabbitMQConsumer] = set()
        self._conn: AsyncioConnection | None = None
        self._ready = asyncio.Event()
        self._started = self._closing = False
        self._reconnecting: asyncio.Task[None] | None = None
        self.reconnects = 0  # connections re-established (orq_broker_reconnects_total)
        self._publisher: ConfirmPublisher | None = None
        self._publisher_lock = asyncio.Lock()
        self._admin: AsyncChannel | None = None
        self._admin_lock = asyncio.Lock()
        self._declared: set[str] = set()
        self._declaring: dict[str, asyncio.Future[None]] = {}
        # ORQ_DLQ_MAX_* as queue arguments: set when a dead-letter queue is created; RabbitMQ refuses
        # new arguments for an existing queue (406, logged by _declare_one), which keeps its own.
        limits = DlqLimits.from_env()
        self._dlq_arguments: dict[str, Any] | None = {
            k: v for k, v in (("x-message-ttl", int(limits.max_age * 1000) if limits.max_age else None),
                              ("x-max-length", limits.max_messages)) if v is not None
        } or None  # fmt: skip
        self._buckets: set[str] = set()
        self._events = EventsChannel(self.open_channel)
        self._registry = _Registry(self)

    def __repr__(self) -> str:
        return f"RabbitMQBroker({redact_url(self.url)!r})"

    @property
    def connected(self) -> bool:
        return self._conn is not None and self._conn.is_open

    # -- connection ------------------------------------------------------------------------

    async def connect(self) -> None:
        if self.connected:
            return
        self._closing = False
        await self._open()
        self._started = True

    async def _open(self) -> None:
        try:
            conn = await open_connection(self._params, self._lost, self.connect_timeout)
        except (pika.exceptions.AMQPError, AMQPConnectorException, OSError, TimeoutError) as exc:
            reason = "timed out" if isinstance(exc, TimeoutError) else short_reason(exc)
            where = redact_url(self.url)
            message = f"cannot reach RabbitMQ at {where}: {reason}; is the server running?"
            if isinstance(exc, _LOGIN_REFUSED):
                message = f"RabbitMQ at {where} {reason}"
            elif (refused := tls_failure(exc)) is not None:
                message = f"cannot connect to RabbitMQ at {where}: {refused}"
            raise BrokerUnavailable(message) from None
        if self._closing:
            conn.close()
            raise BrokerError("the RabbitMQ broker was closed while connecting")
        self._conn = conn
        self._ready.set()

    def _lost(self, conn: AsyncioConnection, reason: BaseException) -> None:
        if conn is not self._conn:
            return
        self._conn = self._publisher = self._admin = None
        self._ready.clear()
        if self._closing:
            return
        log.warning("lost RabbitMQ at %s (%s); reconnecting", redact_url(self.url), short_reason(reason))
        self._reconnecting = asyncio.ensure_future(self._reconnect())

    async def _reconnect(self) -> None:
        delay, failures = 0.2, 0
        while not self._closing:
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            try:
                await self._open()
            except BrokerError as exc:
                failures += 1
                if failures in (1, 5) or failures % 20 == 0:
                    log.warning("%s (attempt %d); still retrying", exc, failures)
                delay = min(delay * 2, 5.0)
                continue
            self.reconnects += 1
            log.warning("reconnected to RabbitMQ at %s", redact_url(self.url))
            await self._events.restore()
            return

    async def connection(self) -> AsyncioConnection:
        """The open connection, waiting for a reconnect in progress (up to ``connect_timeout``)."""
        if self._conn is not None and self._conn.is_open:
            return self._conn
        if self._closing or not self._started:
            raise BrokerError("RabbitMQ broker is not connected: call connect() first")
        try:
            await asyncio.wait_for(self._ready.wait(), self.connect_timeout)
        except TimeoutError:
            raise BrokerUnavailable(
                f"lost the connection to RabbitMQ at {redact_url(self.url)} and could not reconnect "
                f"within {self.connect_timeout:.0f}s; is the server running?"
            ) from None
        return await self.connection()

    async def open_channel(self) -> AsyncChannel:
        return await translate(AsyncChannel.open(await self.connection()), "cannot open a RabbitMQ channel")

    async def close(self) -> None:
        self._closing = True
        if self._reconnecting is not None:
            self._reconnecting.cancel()
        for consumer in list(self.consumers):
            with contextlib.suppress(BrokerError, ChannelClosed):
                await asyncio.wait_for(consumer.close(), 10)
        conn, self._conn = self._conn, None
        self._publisher = self._admin = None
        self._ready.clear()
        if conn is not None and not (conn.is_closing or conn.is_closed):
            conn.close()
            for _ in range(100):  # pika has no awaitable close; the close-ok takes a round trip
                if not conn.is_closed:
                    await asyncio.sleep(0.02)

    # -- publishing ------------------------------------------------------------------------

    async def _confirm_channel(self) -> ConfirmPublisher:
        publisher = self._publisher
        if publisher is not None and publisher.usable:
            return publisher
        async with self._publisher_lock:
            if self._publisher is None or not self._publisher.usable:
                opening = ConfirmPublisher.open(await self.connection())
                self._publisher = await translate(opening, "cannot open the publish channel")
            return self._publisher

    async def send(self, routing_key: str, body: bytes, props: spec.BasicProperties) -> None:
        """Publish and wait for the confirm; resend after a lost channel until ``publish_timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.publish_timeout
        delay, refused = 0.05, 0
        while True:
            try:
                publisher = await self._confirm_channel()
                await publisher.publish(routing_key, body, props)
                return
            except Nacked as exc:
                raise BrokerError(f"RabbitMQ did not take the message for {routing_key} (nack)") from exc
            except Returned as exc:
                refused += 1
                if refused > 2 or routing_key not in self._declared:
                    raise BrokerError(f"publish to {routing_key} failed: the queue does not exist") from exc
                self.forget(routing_key)
                await self.declare(routing_key)
            except ChannelClosed as exc:
                refused += 1 if exc.code else 0
                if refused > 2 or loop.time() > deadline:
                    raise BrokerError(f"publish to {routing_key} failed: {exc}") from exc
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def publish(
        self,
        queue: str,
        body: bytes,
        *,
        message_id: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        await self.declare(queue)
        table = dict(headers) if headers else None
        props = spec.BasicProperties(delivery_mode=2, message_id=message_id, headers=table)
        send = functools.partial(self.send, queue, body, props)
        await self.deduplicated(queue, message_id, send)  # no server-side dedup: support.dedup

    # -- queues ----------------------------------------------------------------------------

    async def admin(self, op: Callable[[AsyncChannel], Awaitable[T]]) -> T:
        """Run ``op`` on the admin channel, one at a time, so a 404/406 is the caller's own."""
        async with self._admin_lock:
            for attempt in (1, 2):
                if self._admin is None or self._admin.closed is not None:
                    self._admin = await self.open_channel()
                try:
                    return await op(self._admin)
                except ChannelClosed as exc:
                    if exc.code or attempt == 2:
                        raise
            raise AssertionError("unreachable")

    async def _declare_one(self, name: str, arguments: dict[str, Any] | None = None) -> None:
        try:
            await self.admin(lambda ch: ch.declare(name, arguments=arguments))
        except ChannelClosed as exc:
            if exc.code == PRECONDITION_FAILED:
                log.warning("queue %s exists with other properties (%s); using it as it is", name, exc.text)
                await self._count(name)
            elif exc.code == RESOURCE_LOCKED:
                raise BrokerError(f"queue {name} is exclusive to another connection") from exc
            else:
                raise BrokerError(f"cannot declare queue {name}: {exc}") from exc

    async def declare(self, queue: str) -> None:
        validate_queue_name(queue)
        if queue in self._declared:
            return
        pending = self._declaring.get(queue)
        if pending is None:
            pending = self._declaring[queue] = asyncio.ensure_future(self._declare_pair(queue))
            pending.add_done_callback(lambda _f: self._declaring.pop(queue, None))
        await asyncio.shield(pending)

    async def _declare_pair(self, queue: str) -> None:
        names = [queue] if queue.endswith(DLQ_SUFFIX) else [queue, dlq_of(queue)]
        for name in names:
            if name not in self._declared:
                await self._declare_one(name, self._dlq_arguments if name.endswith(DLQ_SUFFIX) else None)
        await self._registry.add("+", names)
        self._declared.update(names)

    def forget(self, queue: str) -> None:
        self._declared.discard(queue)

    async def retry_bucket(self, queue: str, delay: float) -> str:
        """Declare (every time: that renews its ``x-expires``) the bucket queue for ``delay``."""
        ms = bucket_ms(delay)
        name = bucket_name(queue, delay)
        arguments = {"x-message-ttl": ms, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": queue,
                     "x-expires": ms + BUCKET_GRACE_MS}  # fmt: skip
        await self._declare_one(name, arguments)
        if name not in self._buckets:
            await self._registry.add("~", [name])
            self._buckets.add(name)
        return name

    async def _count(self, name: str) -> spec.Queue.DeclareOk:
        """A passive declare: message and consumer counts, or BrokerError if ``name`` is missing."""
        return await translate(self.admin(lambda ch: ch.declare(name, passive=True)), f"cannot use {name}")

    async def consume(self, queue: str, *, visibility_timeout: float = 30.0, prefetch: int = 16) -> Consumer:
        consumer = RabbitMQConsumer(self, queue, visibility_timeout, prefetch)
        await consumer.subscribe()
        self.consumers.add(consumer)
        return consumer

    async def own_writes(self) -> None:
        """Wait for this broker's publishes in flight, and for those their confirms set off (a
        worker dead-letters right after its result is confirmed): a process reads its writes."""
        for _ in range(3):
            pending = self._publisher.in_flight() if self._publisher is not None else []
            if not pending:
                return
            await asyncio.wait(pending, timeout=self.publish_timeout)
            await asyncio.sleep(0)

    async def stats(self, queue: str) -> QueueStats:
        await self.declare(queue)
        await self.own_writes()
        main = await self._count(queue)
        dead = 0 if queue.endswith(DLQ_SUFFIX) else (await self._count(dlq_of(queue))).message_count
        in_flight = sum(c.in_flight for c in self.consumers if c.queue == queue)
        return QueueStats(queue=queue, depth=main.message_count, in_flight=in_flight, dead_letters=dead,
                          consumers=main.consumer_count)  # fmt: skip

    async def peek(self, queue: str, limit: int = 10) -> list[Message]:
        await self.declare(queue)
        await self.own_writes()
        channel = await self.open_channel()
        out: list[Message] = []
        try:
            while len(out) < limit:
                got = await channel.get(queue)
                if got is None:
                    break
                _method, props, body = got
                out.append(Message(body, public_headers(props), props.message_id or ""))
        except ChannelClosed as exc:
            raise BrokerError(f"cannot peek {queue}: {exc}") from exc
        finally:
            await channel.close()  # puts them back where they were (marked redelivered)
        return out

    async def purge(self, queue: str) -> int:
        await self.declare(queue)
        return await translate(self.admin(lambda ch: ch.purge(queue)), f"cannot purge {queue}")

    async def delete(self, queue: str) -> None:
        validate_queue_name(queue)
        prefix = f"{queue}.retry."
        known = {n for n, op in (await self._registry.snapshot()).items() if op == "~"} | self._buckets
        for name in [queue, dlq_of(queue), *sorted(n for n in known if n.startswith(prefix))]:
            await translate(self.admin(lambda ch, n=name: ch.delete(n)), f"cannot delete {name}")
            self._declared.discard(name)
            self._buckets.discard(name)
            self._registry.forget(name)
            self.forget_ids(name)

    async def queues(self) -> list[str]:
        names = {n for n, op in (await self._registry.snapshot()).items() if op == "+"}
        return sorted(names | {n for n in self._declared if await self.exists(n)})

    async def exists(self, name: str) -> bool:
        """A passive declare: the only way AMQP 0-9-1 tells whether a queue exists."""
        try:
            await self.admin(lambda ch: ch.declare(name, passive=True))
        except ChannelClosed as exc:
            if exc.code != NOT_FOUND:
                raise BrokerError(f"cannot look for queue {name}: {exc}") from exc
            return False
        return True

    # -- events ----------------------------------------------------------------------------

    async def publish_event(self, subject: str, body: bytes) -> None:
        if self.connected:
            await self._events.publish(subject, body)

    async def subscribe_events(self, subject: str, callback: EventCallback) -> Callable[[], Awaitable[None]]:
        return await self._events.subscribe(subject, callback)


class _Registry:
    """The names this toolkit declared, one message each in ``orq.queues`` (module docstring)."""

    def __init__(self, broker: RabbitMQBroker) -> None:
        self.broker = broker
        self.usable: bool | None = None
        self._written: set[str] = set()

    async def _ensure(self) -> bool:
        if self.usable is None:
            arguments = {"x-single-active-consumer": True}  # one reader (compacter) at a time
            try:
                await self.broker.admin(lambda ch: ch.declare(REGISTRY, arguments=arguments))
            except ChannelClosed as exc:
                if not exc.code:
                    return False  # connection trouble: try again next time
                log.warning("cannot use %s as the queue registry (%s); queues() lists this process's "
                            "queues only", REGISTRY, exc)  # fmt: skip
                self.usable = False
            else:
                self.usable = True
        return self.usable

    async def add(self, op: str, names: list[str]) -> None:
        """Record ``+queue`` / ``~bucket``, once per process; never fail a declare for it."""
        todo = [n for n in names if n not in self._written]
        try:
            if not todo or not await self._ensure():
                return
            await asyncio.gather(*(self.broker.send(REGISTRY, f"{op}{n}".encode(), PERSISTENT) for n in todo))
        except BrokerError as exc:
            log.warning("cannot record %s in %s: %s", ", ".join(todo), REGISTRY, exc)
            self.usable = None
            return
        self._written.update(todo)

    def forget(self, name: str) -> None:
        self._written.discard(name)  # its entry goes at the next snapshot: the queue is gone

    async def snapshot(self) -> dict[str, str]:
        """Every recorded name that still exists (``+`` queue or ``~`` bucket), compacting the registry.

        Reads up to a marker it appends first and acks (removes) its marker, duplicates and names
        whose queue is gone; closing the channel puts the rest back in place for the next reader.
        """
        marker = f"?{time.time():.0f}:{uuid.uuid4().hex}"
        read: list[tuple[int, str]] = []

        def on_message(_raw: Any, method: Any, _props: Any, body: bytes) -> None:
            if not done.done():
                read.append((method.delivery_tag, body.decode("utf-8", "replace")))
                if read[-1][1] == marker:
                    done.set_result(None)

        try:
            if not await self._ensure():
                return {}
            await self.broker.send(REGISTRY, marker.encode(), PERSISTENT)
            channel = await self.broker.open_channel()
            done = channel.future()
            try:
                await channel.consume(REGISTRY, on_message)
                await asyncio.wait_for(done, 30)
                live, drop = await self._sift(read, marker)
                for tag in drop:
                    channel.send(channel.raw.basic_ack, tag)
            finally:
                await channel.close()
        except (BrokerError, ChannelClosed, TimeoutError) as exc:
            log.warning("cannot read %s (%s); listing this process's queues only", REGISTRY, exc or "timeout")
            self.usable = None
            return {}
        return live

    async def _sift(self, read: list[tuple[int, str]], marker: str) -> tuple[dict[str, str], list[int]]:
        """Live names, and the tags to drop: our marker, stale ones (a reader that died), dead names."""
        live: dict[str, str] = {}
        drop: list[int] = []
        for tag, text in read:
            if text.startswith("?"):
                stamp = text[1:].partition(":")[0]
                if text == marker or not stamp.isdigit() or time.time() - int(stamp) > 300:
                    drop.append(tag)
            elif text[:1] not in "+~" or text[1:] in live or not await self.broker.exists(text[1:]):
                drop.append(tag)
            else:
                live[text[1:]] = text[0]
        return live, drop


__all__ = ["ATTEMPTS_HEADER", "RabbitMQBroker", "RabbitMQConsumer", "RabbitMQDelivery", "bucket_name"]
