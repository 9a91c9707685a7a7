"""The NATS JetStream broker: connection, streams, publishing and inspection.

The mapping is in :mod:`orquestrador.brokers.nats` (the package docstring).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, cast

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from nats.js.errors import APIError

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
from orquestrador.brokers.nats import recovery
from orquestrador.brokers.nats.consumer import FIELDS, NatsConsumer, NatsDelivery
from orquestrador.brokers.nats.errors import (
    AlreadyAcked,
    BadRequest,
    DriverError,
    NotFound,
    auth_refused,
    mapped,
    quietly,
)
from orquestrador.brokers.nats.names import DURABLE, MSG_ID, queue_name, stream_name
from orquestrador.brokers.nats.shared import NatsState
from orquestrador.brokers.nats.slots import NatsSlots
from orquestrador.brokers.nats.topics import NatsTopics
from orquestrador.brokers.shared import SharedState
from orquestrador.brokers.slots import Slots
from orquestrador.brokers.support.limits import DlqLimits
from orquestrador.brokers.tls import ssl_context, tls_failure
from orquestrador.errors import BrokerError, BrokerUnavailable
from orquestrador.settings import int_option, pop_url_options, redact_url, server_urls

log = logging.getLogger("orquestrador.brokers.nats")

STREAM_NAMES = "$JS.API.STREAM.NAMES"  # JetStream's listing of stream names (paged by offset)


class NatsBroker(Broker):
    scheme = "nats"
    display_name = "NATS"
    capabilities = Capabilities.everything()

    def __init__(self, url: str, *, request_timeout: float = 10.0) -> None:
        super().__init__(url)
        self.plain_url, options = pop_url_options(self.plain_url, {"replicas"})
        # Streams (and the rate-limit bucket) kept on this many servers of a JetStream cluster.
        self.replicas = int_option(url, "replicas", options.get("replicas"), 1, 1, 5)
        self.servers = server_urls(self.plain_url)
        self.request_timeout = request_timeout
        self.reconnects = 0
        self._recovery = recovery.Reconnects()
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._slots: NatsSlots | None = None
        self._state: NatsState | None = None
        self._dlq = DlqLimits.from_env()
        self._topics = NatsTopics(self)

    @property
    def client(self) -> Client:
        if self._nc is None:
            raise self.not_connected()
        return self._nc

    @property
    def js(self) -> JetStreamContext:
        if self._js is None:
            raise self.not_connected()
        return self._js

    async def connect(self) -> None:
        # nats-py retries a refused TLS handshake or login quietly (and may hang on a refused
        # certificate), so the first such error ends the first connect with a clear message.
        refused: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

        async def on_error(exc: Exception) -> None:
            if not refused.done() and (isinstance(exc, ssl.SSLError) or auth_refused(exc)):
                refused.set_result(exc)
            log.debug("nats client error: %s", exc)

        async def on_disconnect() -> None:
            if self._nc is not None and self._nc.is_reconnecting:  # not a close(): say it
                log.warning("lost the connection to %s; reconnecting", redact_url(self.url))

        async def on_reconnect() -> None:
            self.reconnects += 1
            self._recovery.reconnected()
            self._declared.clear()
            self._topics.forget()
            log.warning("reconnected to %s", redact_url(self.url))

        tls = ssl_context(self.tls) if self.tls is not None else None
        attempt = asyncio.ensure_future(
            nats.connect(
                self.servers,
                name="orquestrador",
                connect_timeout=3,
                # nats-py uses one setting for the first connect and for reconnects: fail the
                # first connect fast (a clear error for a wrong URL), then never give up.
                max_reconnect_attempts=2,
                reconnect_time_wait=0.5,
                allow_reconnect=True,
                error_cb=on_error,
                reconnected_cb=on_reconnect,
                disconnected_cb=on_disconnect,
                tls=tls,
            )
        )
        racing: list[asyncio.Future[Any]] = [cast(asyncio.Future[Any], attempt), refused]
        await asyncio.wait(racing, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        try:
            if not attempt.done():
                attempt.cancel()
                await asyncio.wait({attempt}, timeout=5)
                raise refused.result() if refused.done() else TimeoutError("connect timed out")
            self._nc = attempt.result()
        except (TimeoutError, DriverError, OSError) as exc:
            raise BrokerUnavailable(self._unavailable(refused.result() if refused.done() else exc)) from None
        if not refused.done():
            refused.cancel()
        self._nc.options["max_reconnect_attempts"] = -1
        self._js = self._nc.jetstream(timeout=self.request_timeout)

    def _unavailable(self, exc: BaseException) -> str:
        where = redact_url(self.url)
        if auth_refused(exc):
            return (
                f"NATS at {where} refused the credentials ({exc}): check the user and password, "
                "or the token, in the URL"
            )
        hint = tls_failure(exc)
        if hint is not None and self.tls is None:  # a plain nats:// URL to a server requiring TLS
            hint += " (use a tls:// URL: the TLS settings only apply to it)"
        if hint is not None:
            return f"cannot connect to NATS at {where}: {hint}"
        reason = exc or type(exc).__name__
        return f"cannot reach NATS at {where}: {reason}; is the server running (orq broker status)?"

    async def close(self) -> None:
        if self._nc is not None and not self._nc.is_closed:
            await quietly(self._nc.drain())
        self._nc = None
        self._js = None

    async def _declare_new(self, names: list[str]) -> None:
        for name in names:
            capped = name.endswith(DLQ_SUFFIX) and (self._dlq.max_age or self._dlq.max_messages)
            config = api.StreamConfig(
                name=stream_name(name),
                subjects=[name],
                retention=api.RetentionPolicy.WORK_QUEUE,
                storage=api.StorageType.FILE,
                num_replicas=self.replicas,
                # JetStream refuses a duplicate window longer than the stream's max age.
                duplicate_window=min(120.0, self._dlq.max_age or 120.0) if capped else 120.0,
                # Dead letters past ORQ_DLQ_MAX_AGE / ORQ_DLQ_MAX_MESSAGES: the server drops the oldest.
                max_age=self._dlq.max_age if capped else None,
                max_msgs=self._dlq.max_messages if capped else None,
            )
            with mapped(f"cannot declare {name}"):
                try:
                    await self.js.add_stream(config)
                except BadRequest as exc:
                    if capped:  # a dead-letter stream from before the caps: they apply to it too
                        await self._update_caps(config, exc)
                    else:  # exists with other settings (e.g. by an older version): used as it is
                        log.warning("stream %s exists with other settings: %s", config.name, exc)

    async def _update_caps(self, config: api.StreamConfig, refused: Exception) -> None:
        try:
            await self.js.update_stream(config)
        except DriverError as exc:
            log.warning("stream %s keeps its settings (%s); its dead-letter caps not applied: %s",
                        config.name, refused, exc)  # fmt: skip

    async def ensure_consumer(self, queue: str, visibility: float) -> None:
        await self.declare(queue)
        config = api.ConsumerConfig(
            durable_name=DURABLE,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=visibility,
            max_deliver=-1,
            max_ack_pending=-1,
            filter_subject=queue,
        )
        with mapped(f"cannot create consumer on {queue}"):
            try:
                await self.js.add_consumer(stream_name(queue), config)
            except BadRequest:
                # Exists with another ack wait: update it so the newest worker's setting wins.
                await self.js.add_consumer(stream_name(queue), config)

    async def publish(
        self,
        queue: str,
        body: bytes,
        *,
        message_id: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        await self.declare(queue)
        hdrs = dict(headers or {})
        if message_id:
            hdrs[MSG_ID] = message_id
        js = self.js

        def send(timeout: float) -> Awaitable[api.PubAck]:
            name = stream_name(queue)
            return js.publish(queue, body, timeout=timeout, headers=dict(hdrs) or None, stream=name)

        with mapped(f"publish to {queue} failed"):
            # With a message_id a copy is dropped by the server: re-sent through a restart.
            await recovery.publish(send, request_timeout=self.request_timeout, retry=bool(message_id),
                                   reconnects=self._recovery, connected=self._connected,
                                   clustered=self.replicas > 1)  # fmt: skip

    def _connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    async def ack_many(self, deliveries: Sequence[Delivery]) -> int:
        """Plain acks, then one PING/PONG: the server has them all, in one round trip, not one each."""
        failed = 0
        for delivery in deliveries:
            if not isinstance(delivery, NatsDelivery):
                raise TypeError(f"not a NATS delivery: {delivery!r}")
            try:
                await delivery._msg.ack()
            except AlreadyAcked:
                continue
            except DriverError:
                failed += 1
        if self._nc is None:
            raise self.not_connected()
        try:
            await self._nc.flush(timeout=max(1, int(self.request_timeout)))
        except (DriverError, TimeoutError) as exc:
            log.warning("acks of %d results not confirmed: %s", len(deliveries), exc)
            return len(deliveries)
        return failed

    async def consume(self, queue: str, *, visibility_timeout: float = 30.0, prefetch: int = 16) -> Consumer:
        consumer = NatsConsumer(self, queue, visibility_timeout, prefetch)
        await consumer._subscription()
        return consumer

    async def stats(self, queue: str) -> QueueStats:
        await self.declare(queue)
        with mapped(f"cannot read stats of {queue}"):
            info = await self.js.stream_info(stream_name(queue))
            dead = 0
            if not queue.endswith(DLQ_SUFFIX):
                dead = (await self.js.stream_info(stream_name(dlq_of(queue)))).state.messages
            ack_pending = waiting = 0
            try:
                cinfo = await self.js.consumer_info(stream_name(queue), DURABLE)
                ack_pending = cinfo.num_ack_pending or 0
                waiting = cinfo.num_waiting or 0
            except NotFound:
                pass
            oldest = None
            if info.state.messages:
                try:
                    first = await self.js.get_msg(stream_name(queue), seq=info.state.first_seq,
                                                  subject=queue, next=True)  # fmt: skip
                    oldest = _age(first)
                except NotFound:
                    pass  # acked and removed since stream_info was read: no age to show
        return QueueStats(
            queue=queue,
            depth=max(0, info.state.messages - ack_pending),
            in_flight=ack_pending,
            dead_letters=dead,
            consumers=waiting,
            oldest_age=oldest,
        )

    async def dead_letter_snapshot(self, queue: str) -> tuple[int, tuple[int, ...] | None]:
        dlq = dlq_of(queue)
        await self.declare(dlq)
        with mapped(f"cannot read the dead letters of {queue}"):
            state = (await self.js.stream_info(stream_name(dlq))).state
        return state.messages, (state.last_seq or 0,)

    async def peek(self, queue: str, limit: int = 10) -> list[Message]:
        await self.declare(queue)
        out: list[Message] = []
        seq = 1
        with mapped(f"cannot peek {queue}"), contextlib.suppress(NotFound):  # NotFound: past the last
            while len(out) < limit:
                raw = await self.js.get_msg(stream_name(queue), seq=seq, subject=queue, next=True)
                out.append(Message(raw.data or b"", FIELDS.clean(raw.headers), str(raw.seq)))
                seq = (raw.seq or seq) + 1
        return out

    async def purge(self, queue: str) -> int:
        await self.declare(queue)
        with mapped(f"cannot purge {queue}"):
            before = (await self.js.stream_info(stream_name(queue))).state.messages
            await self.js.purge_stream(stream_name(queue))
        return before

    async def delete(self, queue: str) -> None:
        for name in (queue, dlq_of(queue)):
            self.forget(name)
            with mapped(f"cannot delete {name}"), contextlib.suppress(NotFound):
                await self.js.delete_stream(stream_name(name))

    async def queues(self) -> list[str]:
        with mapped("cannot list streams"):
            streams = await self._stream_names()
        names = (queue_name(stream) for stream in streams)
        return sorted(n for n in names if n)

    async def _stream_names(self) -> list[str]:
        """Every stream's name, page after page: the server answers a listing with one page (up
        to 1,024 names; 256 for ``streams_info()``, all nats.py asks for), and a server shared
        with other applications easily holds more."""
        names: list[str] = []
        while True:
            request = json.dumps({"offset": len(names)}).encode()
            reply = await self.client.request(STREAM_NAMES, request, timeout=self.request_timeout)
            try:
                page = json.loads(reply.data)
            except ValueError as exc:
                raise BrokerError(f"NATS answered the stream listing with no JSON: {exc}") from exc
            if not isinstance(page, dict):
                raise BrokerError("NATS answered the stream listing with no JSON object")
            if "error" in page:
                raise APIError.from_error(page["error"])
            got = [name for name in page.get("streams") or () if isinstance(name, str)]
            names.extend(got)
            if not got or len(names) >= int(page.get("total") or 0):
                return names

    def shared_state(self) -> SharedState:
        if self._state is None:
            self._state = NatsState(lambda: self.js, replicas=self.replicas)
        return self._state

    def slots(self) -> Slots:
        if self._slots is None:
            self._slots = NatsSlots(lambda: self.js, replicas=self.replicas)
        return self._slots

    async def publish_event(self, subject: str, body: bytes) -> None:
        if self._nc is None:
            return
        try:
            await self._nc.publish(subject, body)
        except DriverError as exc:  # best effort: an event is never worth an error
            log.debug("event not sent: %s", exc)

    async def subscribe_events(self, subject: str, callback: EventCallback) -> Callable[[], Awaitable[None]]:
        if self._nc is None:
            raise self.not_connected()

        async def handler(msg: Msg) -> None:
            try:
                result = callback(msg.data)
                if asyncio.iscoroutine(result):
                    await result
            except Exception:  # nats-py would only pass it to error_cb, logged at debug level
                log.exception("event callback for %s failed", subject)

        sub = await self._nc.subscribe(subject, cb=handler)

        async def unsubscribe() -> None:
            await quietly(sub.unsubscribe())

        return unsubscribe

    # -- topics (topics.py) ------------------------------------------------------------------

    async def publish_topic(self, topic: str, body: bytes) -> None:
        await self._topics.publish(topic, body)

    async def publish_topics(self, items: Sequence[tuple[str, bytes]]) -> int:
        return await self._topics.publish_many(items)

    async def subscribe_topic(
        self, pattern: str, callback: TopicCallback, *, durable: str | None = None
    ) -> Unsubscribe:
        return await self._topics.subscribe(pattern, callback, durable)

    async def delete_subscription(self, durable: str) -> None:
        await self._topics.delete(durable)


def _age(raw: Any) -> float | None:
    stamp = getattr(raw, "time", None)
    if isinstance(stamp, datetime):
        return (datetime.now(UTC) - stamp).total_seconds()
    return None
