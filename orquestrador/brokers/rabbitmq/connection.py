"""The adapter's one AMQP connection: opened on the first server of the URL that answers,
re-opened with backoff when lost, and awaited by whoever needs it meanwhile."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

import pika
from pika.adapters.asyncio_connection import AsyncioConnection

from orquestrador.brokers.rabbitmq import pika_reads, pika_writes
from orquestrador.brokers.rabbitmq.channel import AsyncChannel, open_connection, short_reason
from orquestrador.brokers.rabbitmq.errors import CONNECT_ERRORS, mapped, unreachable
from orquestrador.brokers.tls import ssl_context
from orquestrador.errors import BrokerError, BrokerUnavailable, ConfigError
from orquestrador.settings import TlsPaths, redact_url, server_urls

log = logging.getLogger("orquestrador.brokers.rabbitmq.broker")


def prepare_pika() -> None:
    """Once per process, before the first connection (idempotent): frames leave in one send()
    (:mod:`.pika_writes`), undecodable properties end their message, not the connection
    (:mod:`.pika_reads`), and pika, which logs each expected failure (a refused connection, a
    406 handled here) at ERROR many lines deep, stays quiet unless configured: this adapter
    reports each failure in one line."""
    pika_writes.install()
    pika_reads.install()
    if logging.getLogger("pika").level == logging.NOTSET:
        logging.getLogger("pika").setLevel(logging.CRITICAL)


class Connection:
    """One connection for a broker URL (``url`` only ever shown redacted).

    The URL may list a cluster's nodes (``amqp://u:p@h1:5672,h2:5672/vhost``): they are tried in
    turn, starting with the last that answered. ``on_lost`` runs when the connection drops (the
    broker forgets its channels), ``on_restored`` once a reconnect succeeded.
    """

    def __init__(
        self,
        url: str,
        plain_url: str,
        tls: TlsPaths | None,
        timeout: float,
        on_lost: Callable[[], None],
        on_restored: Callable[[], Awaitable[None]],
    ) -> None:
        self.url, self.timeout = url, timeout
        self._servers = [_parameters(server, url, tls) for server in server_urls(plain_url)]
        self._server = 0
        self._on_lost, self._on_restored = on_lost, on_restored
        self._conn: AsyncioConnection | None = None
        self._ready = asyncio.Event()
        self._started = self._closing = False
        self._reconnecting: asyncio.Task[None] | None = None

    @property
    def open(self) -> bool:
        return self._conn is not None and self._conn.is_open

    @property
    def started(self) -> bool:
        """Opened once and not closed since (a reconnect may be in progress)."""
        return self._started and not self._closing

    async def start(self) -> None:
        if self.open:
            return
        self._closing = False
        await self._open()
        self._started = True

    async def _open(self) -> None:
        prepare_pika()
        for tried in range(len(self._servers)):
            index = (self._server + tried) % len(self._servers)
            try:
                conn = await open_connection(self._servers[index], self._lost, self.timeout)
            except CONNECT_ERRORS as exc:
                if tried == len(self._servers) - 1:
                    raise unreachable(exc, redact_url(self.url)) from None
                continue
            self._server = index
            break
        if self._closing:
            conn.close()
            raise BrokerError("the RabbitMQ broker was closed while connecting")
        self._conn = conn
        self._ready.set()

    def _lost(self, conn: AsyncioConnection, reason: BaseException) -> None:
        if conn is not self._conn:
            return
        self._conn = None
        self._ready.clear()
        self._on_lost()
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
            log.warning("reconnected to RabbitMQ at %s", redact_url(self.url))
            await self._on_restored()
            return

    async def current(self, not_connected: BrokerError) -> AsyncioConnection:
        """The open connection, waiting for a reconnect in progress (up to ``timeout``);
        ``not_connected`` is raised before the first open or after close."""
        if self._conn is not None and self._conn.is_open:
            return self._conn
        if not self.started:
            raise not_connected
        try:
            await asyncio.wait_for(self._ready.wait(), self.timeout)
        except TimeoutError:
            raise BrokerUnavailable(
                f"lost the connection to RabbitMQ at {redact_url(self.url)} and could not reconnect "
                f"within {self.timeout:.0f}s; is the server running?"
            ) from None
        return await self.current(not_connected)

    async def channel(self, not_connected: BrokerError) -> AsyncChannel:
        connection = await self.current(not_connected)
        with mapped("cannot open a RabbitMQ channel"):
            return await AsyncChannel.open(connection)

    def closing(self) -> None:
        """No reconnect from now on (the broker closes its consumers, then :meth:`close`)."""
        self._closing = True
        if self._reconnecting is not None:
            self._reconnecting.cancel()

    async def close(self) -> None:
        self.closing()
        conn, self._conn = self._conn, None
        self._ready.clear()
        if conn is not None and not (conn.is_closing or conn.is_closed):
            conn.close()
            for _ in range(100):  # pika has no awaitable close; the close-ok takes a round trip
                if not conn.is_closed:
                    await asyncio.sleep(0.02)


def _parameters(server: str, url: str, tls: TlsPaths | None) -> pika.URLParameters:
    try:
        params = pika.URLParameters(server)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"invalid RabbitMQ URL {redact_url(url)}: {type(exc).__name__}") from None
    if tls is not None:
        params.ssl_options = pika.SSLOptions(ssl_context(tls), server_hostname=params.host)
    params.client_properties = {"connection_name": "orquestrador"}
    return params
