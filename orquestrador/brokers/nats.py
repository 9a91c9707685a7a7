"""NATS JetStream adapter (nats-py).

Mapping: each queue is a JetStream stream ``ORQ_<queue>`` (``.dlq`` becomes ``__dlq``) whose
only subject is the queue name itself, so a message published by hand on ``escavador_x`` is a
job. Streams use work-queue retention and file storage; one durable pull consumer, ``workers``,
is shared by every worker of the queue. The visibility timeout is the consumer's AckWait,
``heartbeat()`` is ``in_progress()``, ``nack(delay)`` is ``nak(delay)``, and the attempt is
JetStream's ``num_delivered``. MaxDeliver is unlimited: the worker runtime dead-letters itself,
because JetStream would otherwise leave an exhausted message silently in the stream.
``publish`` waits for the PubAck and sets ``Nats-Msg-Id`` so duplicates within the stream's
duplicate window are dropped by the server; that makes it safe to re-send such a publish
through a server restart (:mod:`orquestrador.brokers.nats_recovery`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from orquestrador.brokers import nats_recovery
from orquestrador.brokers.base import (
    DLQ_SUFFIX,
    Broker,
    Capabilities,
    Consumer,
    Delivery,
    EventCallback,
    Message,
    QueueStats,
    dead_letter_headers,
    dlq_of,
    validate_queue_name,
)
from orquestrador.brokers.intake import FieldReader
from orquestrador.brokers.slots import Slots
from orquestrador.brokers.tls import ssl_context, tls_failure
from orquestrador.errors import BrokerError, BrokerUnavailable
from orquestrador.retention import DlqLimits
from orquestrador.settings import redact_url, split_tls

log = logging.getLogger(__name__)

STREAM_PREFIX = "ORQ_"
RATE_LIMIT_BUCKET = "ORQ_RATELIMIT"
_KV_KEY = re.compile(r"[^-/_=.a-zA-Z0-9]")
DURABLE = "workers"
_MSG_ID = "Nats-Msg-Id"


def stream_name(queue: str) -> str:
    validate_queue_name(queue)
    if queue.endswith(DLQ_SUFFIX):
        return STREAM_PREFIX + queue[: -len(DLQ_SUFFIX)] + "__dlq"
    return STREAM_PREFIX + queue


def queue_name(stream: str) -> str | None:
    if not stream.startswith(STREAM_PREFIX):
        return None
    base = stream[len(STREAM_PREFIX) :]
    return base[: -len("__dlq")] + DLQ_SUFFIX if base.endswith("__dlq") else base


def _public_headers(headers: dict[str, Any] | None, reader: FieldReader | None = None) -> dict[str, str]:
    # ``Nats-*`` headers steer the server (dedup, expected stream, TTL...): never carried over.
    return (reader or FieldReader()).headers((headers or {}).items(), "NATS headers", skip=("nats-",))


class NatsDelivery(Delivery):
    def __init__(self, broker: NatsBroker, queue: str, msg: Msg) -> None:
        self._broker = broker
        self._msg = msg
        self.body = msg.data
        reader = FieldReader()  # headers come from whoever published: read like a body
        self.headers = _public_headers(msg.headers, reader)
        self.queue = queue
        self.attempt = msg.metadata.num_delivered or 1
        self.message_id = reader.text((msg.headers or {}).get(_MSG_ID), "Nats-Msg-Id header")
        self.problem = reader.problem
        self.position = (msg.metadata.sequence.stream,)

    async def ack(self) -> None:
        try:
            await self._msg.ack_sync(timeout=self._broker.request_timeout)
        except nats.js.errors.NotFoundError:
            pass  # already gone
        except nats.errors.Error as exc:
            raise BrokerError(f"ack failed on {self.queue}: {exc}") from exc

    async def nack(self, delay: float = 0.0) -> None:
        try:
            await self._msg.nak(delay=delay if delay > 0 else None)
        except nats.errors.Error as exc:
            raise BrokerError(f"nack failed on {self.queue}: {exc}") from exc

    async def heartbeat(self) -> None:
        try:
            await self._msg.in_progress()
        except nats.errors.Error as exc:
            raise BrokerError(f"heartbeat failed on {self.queue}: {exc}") from exc

    async def dead_letter(self, reason: str, *, error_type: str = "Error") -> None:
        headers = dead_letter_headers(
            self.headers, queue=self.queue, reason=reason, error_type=error_type,
            attempts=self.attempt,
        )  # fmt: skip
        await self._broker.publish(dlq_of(self.queue), self.body, headers=headers)
        await self.ack()


class NatsConsumer(Consumer):
    def __init__(self, broker: NatsBroker, queue: str, visibility: float, prefetch: int) -> None:
        self._broker = broker
        self._queue = queue
        self._visibility = visibility
        self._prefetch = prefetch
        self._sub: JetStreamContext.PullSubscription | None = None
        self._generation = -1
        self._extra: list[Msg] = []  # nats-py's fetch(n) may return more than n: kept for later

    async def _subscription(self) -> JetStreamContext.PullSubscription:
        # After a reconnect the server may have lost the consumer (or the stream); re-create it.
        if self._sub is None or self._generation != self._broker.reconnects:
            self._generation = self._broker.reconnects
            await self._broker._ensure_consumer(self._queue, self._visibility)
            await self._drop_subscription()
            self._sub = await self._broker.js.pull_subscribe_bind(
                durable=DURABLE, stream=stream_name(self._queue),
                pending_msgs_limit=max(1024, self._prefetch * 4),
            )  # fmt: skip
        return self._sub

    async def fetch(self, max_messages: int, timeout: float) -> list[Delivery]:
        if self._extra:
            msgs, self._extra = self._extra[:max_messages], self._extra[max_messages:]
            return [NatsDelivery(self._broker, self._queue, m) for m in msgs]
        try:
            sub = await self._subscription()
            # One pull request: nats-py returns as soon as messages are there (measured: an idle
            # round trip 2.4 ms; a first fetch(1) plus a top-up fetch cost 5-45 ms of waiting).
            msgs = await sub.fetch(batch=max(1, max_messages), timeout=max(timeout, 0.01))
        except (TimeoutError, nats.errors.TimeoutError):
            return []  # nothing arrived: an empty batch, not an error
        except nats.js.errors.NotFoundError:
            await self._drop_subscription()
            return []
        except nats.errors.Error as exc:
            await self._drop_subscription()
            raise BrokerError(f"fetch from {self._queue} failed: {exc}") from exc
        # nats-py hands over everything its subscription already holds, whatever the batch size.
        msgs, self._extra = msgs[: max(1, max_messages)], msgs[max(1, max_messages) :]
        return [NatsDelivery(self._broker, self._queue, m) for m in msgs]

    async def _drop_subscription(self) -> None:
        # Unsubscribed, not just forgotten: the client would otherwise keep it, and its drain on
        # close waits 30 s for it (nats-py never marks what a fetch took as done).
        sub, self._sub = self._sub, None
        if sub is None:
            return
        # Messages the server already sent it would wait out AckWait: give them back now.
        pending = getattr(getattr(sub, "_sub", None), "_pending_queue", None)
        while isinstance(pending, asyncio.Queue) and not pending.empty():
            msg = pending.get_nowait()
            pending.task_done()
            if msg.reply:
                await _quietly(msg.nak())
        await _quietly(sub.unsubscribe())

    async def close(self) -> None:
        extra, self._extra = self._extra, []
        for msg in extra:  # fetched for nobody: back to the queue now, not at AckWait
            await _quietly(msg.nak())
        await self._drop_subscription()


class NatsSlots(Slots):
    """Slots in the KV bucket ORQ_RATELIMIT, updated with compare-and-set: shared by every worker
    on this server. Clocks of worker machines are assumed roughly in sync."""

    def __init__(self, js: Callable[[], JetStreamContext]) -> None:
        self._js = js
        self._kv: Any = None

    async def reserve(self, key: str, interval: float) -> float:
        name = _KV_KEY.sub("_", key).strip(".") or "_"
        try:
            if self._kv is None:
                self._kv = await self._js().create_key_value(bucket=RATE_LIMIT_BUCKET, history=1, ttl=3600)
            for _ in range(50):
                now = time.time()
                try:
                    entry = await self._kv.get(name)
                    slot, revision = max(float(entry.value or b"0"), now), entry.revision
                except nats.js.errors.KeyNotFoundError:
                    slot, revision = now, None
                value = repr(slot + interval).encode()
                try:
                    if revision is None:
                        await self._kv.create(name, value)
                    else:
                        await self._kv.update(name, value, last=revision)
                    return slot - now
                except nats.js.errors.KeyWrongLastSequenceError:
                    continue  # another worker took this slot; read again
        except nats.errors.Error as exc:
            raise BrokerError(f"cannot reserve a rate-limit slot for {key}: {exc}") from exc
        raise BrokerError(f"rate-limit slot for {key} kept changing under contention")


class NatsBroker(Broker):
    scheme = "nats"
    capabilities = Capabilities.everything()

    def __init__(self, url: str, *, request_timeout: float = 10.0) -> None:
        self.url = url
        self._client_url, self._tls = split_tls(url)
        self.request_timeout = request_timeout
        self.reconnects = 0
        self._recovery = nats_recovery.Reconnects()
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._declared: set[str] = set()
        self._slots: NatsSlots | None = None
        self._dlq = DlqLimits.from_env()

    def __repr__(self) -> str:
        return f"NatsBroker({redact_url(self.url)!r})"

    @property
    def js(self) -> JetStreamContext:
        if self._js is None:
            raise BrokerError("NATS broker is not connected: call connect() first")
        return self._js

    async def connect(self) -> None:
        # nats-py retries a refused TLS handshake or login quietly (and may hang on a refused
        # certificate), so the first such error ends the first connect with a clear message.
        refused: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

        async def on_error(exc: Exception) -> None:
            if not refused.done() and (isinstance(exc, ssl.SSLError) or _auth_refused(exc)):
                refused.set_result(exc)
            log.debug("nats client error: %s", exc)

        async def on_reconnect() -> None:
            self.reconnects += 1
            self._recovery.reconnected()
            self._declared.clear()
            log.warning("reconnected to %s", redact_url(self.url))

        tls = ssl_context(self._tls) if self._tls is not None else None
        attempt = asyncio.ensure_future(
            nats.connect(
                self._client_url,
                name="orquestrador",
                connect_timeout=3,
                # nats-py uses one setting for the first connect and for reconnects: fail the
                # first connect fast (a clear error for a wrong URL), then never give up.
                max_reconnect_attempts=2,
                reconnect_time_wait=0.5,
                allow_reconnect=True,
                error_cb=on_error,
                reconnected_cb=on_reconnect,
                tls=tls,
            )
        )
        await asyncio.wait({attempt, refused}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        try:
            if not attempt.done():
                attempt.cancel()
                await asyncio.wait({attempt}, timeout=5)
                raise refused.result() if refused.done() else TimeoutError("connect timed out")
            self._nc = attempt.result()
        except (TimeoutError, nats.errors.Error, OSError) as exc:
            raise BrokerUnavailable(self._unavailable(refused.result() if refused.done() else exc)) from None
        if not refused.done():
            refused.cancel()
        self._nc.options["max_reconnect_attempts"] = -1
        self._js = self._nc.jetstream(timeout=self.request_timeout)

    def _unavailable(self, exc: BaseException) -> str:
        where = redact_url(self.url)
        if _auth_refused(exc):
            return (
                f"NATS at {where} refused the credentials ({exc}): check the user and password, "
                "or the token, in the URL"
            )
        hint = tls_failure(exc)
        if hint is not None and self._tls is None:  # a plain nats:// URL to a server requiring TLS
            hint += " (use a tls:// URL: the TLS settings only apply to it)"
        if hint is not None:
            return f"cannot connect to NATS at {where}: {hint}"
        reason = exc or type(exc).__name__
        return f"cannot reach NATS at {where}: {reason}; is the server running (orq broker status)?"

    async def close(self) -> None:
        if self._nc is not None and not self._nc.is_closed:
            await _quietly(self._nc.drain())
        self._nc = None
        self._js = None

    async def declare(self, queue: str) -> None:
        for name in (queue, dlq_of(queue)):
            if name in self._declared:
                continue
            capped = name.endswith(DLQ_SUFFIX) and (self._dlq.max_age or self._dlq.max_messages)
            config = api.StreamConfig(
                name=stream_name(name),
                subjects=[name],
                retention=api.RetentionPolicy.WORK_QUEUE,
                storage=api.StorageType.FILE,
                # JetStream refuses a duplicate window longer than the stream's max age.
                duplicate_window=min(120.0, self._dlq.max_age or 120.0) if capped else 120.0,
                # Dead letters past ORQ_DLQ_MAX_AGE / ORQ_DLQ_MAX_MESSAGES: the server drops the oldest.
                max_age=self._dlq.max_age if capped else None,
                max_msgs=self._dlq.max_messages if capped else None,
            )
            try:
                await self.js.add_stream(config)
            except nats.js.errors.BadRequestError as exc:
                if capped:  # a dead-letter stream from before the caps: they apply to it too
                    await self._update_caps(config, exc)
                else:  # exists with other settings (e.g. created by an older version): use it as it is
                    log.warning("stream %s exists with other settings: %s", config.name, exc)
            except nats.errors.Error as exc:
                raise BrokerError(f"cannot declare {name}: {exc}") from exc
            self._declared.add(name)

    async def _update_caps(self, config: api.StreamConfig, refused: Exception) -> None:
        try:
            await self.js.update_stream(config)
        except nats.errors.Error as exc:
            log.warning("stream %s keeps its settings (%s); its dead-letter caps not applied: %s",
                        config.name, refused, exc)  # fmt: skip

    async def _ensure_consumer(self, queue: str, visibility: float) -> None:
        await self.declare(queue)
        config = api.ConsumerConfig(
            durable_name=DURABLE,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=visibility,
            max_deliver=-1,
            max_ack_pending=-1,
            filter_subject=queue,
        )
        try:
            await self.js.add_consumer(stream_name(queue), config)
        except nats.js.errors.BadRequestError:
            # Exists with another ack wait: update it so the newest worker's setting wins.
            await self.js.add_consumer(stream_name(queue), config)
        except nats.errors.Error as exc:
            raise BrokerError(f"cannot create consumer on {queue}: {exc}") from exc

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
            hdrs[_MSG_ID] = message_id
        js = self.js

        def send(timeout: float) -> Awaitable[api.PubAck]:
            name = stream_name(queue)
            return js.publish(queue, body, timeout=timeout, headers=dict(hdrs) or None, stream=name)

        try:
            # With a message_id a copy is dropped by the server: re-sent through a restart.
            await nats_recovery.publish(send, request_timeout=self.request_timeout, retry=bool(message_id),
                                        reconnects=self._recovery, connected=self._connected)  # fmt: skip
        except nats.errors.MaxPayloadError as exc:
            raise BrokerError(f"message too large for NATS on {queue}: {exc}") from exc
        except nats.errors.Error as exc:
            raise BrokerError(f"publish to {queue} failed: {exc}") from exc

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
            except nats.errors.MsgAlreadyAckdError:
                continue
            except nats.errors.Error:
                failed += 1
        if self._nc is None:
            raise BrokerError("NATS broker is not connected: call connect() first")
        try:
            await self._nc.flush(timeout=max(1, int(self.request_timeout)))
        except (nats.errors.Error, TimeoutError) as exc:
            log.warning("acks of %d results not confirmed: %s", len(deliveries), exc)
            return len(deliveries)
        return failed

    async def consume(self, queue: str, *, visibility_timeout: float = 30.0, prefetch: int = 16) -> Consumer:
        consumer = NatsConsumer(self, queue, visibility_timeout, prefetch)
        await consumer._subscription()
        return consumer

    async def stats(self, queue: str) -> QueueStats:
        await self.declare(queue)
        try:
            info = await self.js.stream_info(stream_name(queue))
            dead = 0
            if not queue.endswith(DLQ_SUFFIX):
                dead = (await self.js.stream_info(stream_name(dlq_of(queue)))).state.messages
            ack_pending = waiting = 0
            try:
                cinfo = await self.js.consumer_info(stream_name(queue), DURABLE)
                ack_pending = cinfo.num_ack_pending or 0
                waiting = cinfo.num_waiting or 0
            except nats.js.errors.NotFoundError:
                pass
            oldest = None
            if info.state.messages:
                try:
                    first = await self.js.get_msg(stream_name(queue), seq=info.state.first_seq,
                                                  subject=queue, next=True)  # fmt: skip
                    oldest = _age(first)
                except nats.js.errors.NotFoundError:
                    pass  # acked and removed since stream_info was read: no age to show
        except nats.errors.Error as exc:
            raise BrokerError(f"cannot read stats of {queue}: {exc}") from exc
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
        try:
            state = (await self.js.stream_info(stream_name(dlq))).state
        except nats.errors.Error as exc:
            raise BrokerError(f"cannot read the dead letters of {queue}: {exc}") from exc
        return state.messages, (state.last_seq or 0,)

    async def peek(self, queue: str, limit: int = 10) -> list[Message]:
        await self.declare(queue)
        out: list[Message] = []
        seq = 1
        try:
            while len(out) < limit:
                raw = await self.js.get_msg(stream_name(queue), seq=seq, subject=queue, next=True)
                out.append(Message(raw.data or b"", _public_headers(raw.headers), str(raw.seq)))
                seq = (raw.seq or seq) + 1
        except nats.js.errors.NotFoundError:
            pass
        except nats.errors.Error as exc:
            raise BrokerError(f"cannot peek {queue}: {exc}") from exc
        return out

    async def purge(self, queue: str) -> int:
        await self.declare(queue)
        try:
            before = (await self.js.stream_info(stream_name(queue))).state.messages
            await self.js.purge_stream(stream_name(queue))
        except nats.errors.Error as exc:
            raise BrokerError(f"cannot purge {queue}: {exc}") from exc
        return before

    async def delete(self, queue: str) -> None:
        for name in (queue, dlq_of(queue)):
            self._declared.discard(name)
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await self.js.delete_stream(stream_name(name))

    async def queues(self) -> list[str]:
        try:
            infos = await self.js.streams_info()
        except nats.errors.Error as exc:
            raise BrokerError(f"cannot list streams: {exc}") from exc
        names = (queue_name(i.config.name) for i in infos if i.config.name)
        return sorted(n for n in names if n)

    def slots(self) -> Slots:
        if self._slots is None:
            self._slots = NatsSlots(lambda: self.js)
        return self._slots

    async def publish_event(self, subject: str, body: bytes) -> None:
        if self._nc is None:
            return
        try:
            await self._nc.publish(subject, body)
        except nats.errors.Error as exc:
            log.debug("event not sent: %s", exc)

    async def subscribe_events(self, subject: str, callback: EventCallback) -> Callable[[], Awaitable[None]]:
        if self._nc is None:
            raise BrokerError("NATS broker is not connected: call connect() first")

        async def handler(msg: Msg) -> None:
            result = callback(msg.data)
            if asyncio.iscoroutine(result):
                await result

        sub = await self._nc.subscribe(subject, cb=handler)

        async def unsubscribe() -> None:
            await _quietly(sub.unsubscribe())

        return unsubscribe


def _auth_refused(exc: BaseException) -> bool:
    return isinstance(exc, nats.errors.AuthorizationError) or "authorization violation" in str(exc).lower()


def _age(raw: Any) -> float | None:
    stamp = getattr(raw, "time", None)
    if isinstance(stamp, datetime):
        return (datetime.now(UTC) - stamp).total_seconds()
    return None


async def _quietly(awaitable: Awaitable[Any]) -> None:
    try:
        await awaitable
    except (TimeoutError, nats.errors.Error, OSError) as exc:
        log.debug("ignored during cleanup: %s", exc)
