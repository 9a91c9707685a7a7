"""Broker adapters, chosen by URL scheme.

Each scheme is registered in the entry-point group ``orquestrador.brokers``
(:mod:`orquestrador.brokers.registry`): the built-ins are ``memory://`` in-process (unit tests),
``nats://`` / ``tls://`` NATS JetStream, ``redis://`` / ``rediss://`` Redis Streams,
``amqp://`` / ``amqps://`` RabbitMQ, and any installed package can add more. With no URL at
all, :mod:`orquestrador.brokers.embedded` starts or attaches to a local nats-server so
everything works on a fresh machine.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from orquestrador.brokers.base import Broker, Capabilities, Consumer, Delivery, Message, QueueStats
from orquestrador.brokers.registry import adapter_for
from orquestrador.settings import broker_url, check_url


def resolve_url(url: str | None = None) -> str:
    """The URL to use: the argument, ``ORQ_BROKER_URL``, or the embedded server's (started now)."""
    chosen = broker_url(url)
    if chosen is not None:
        return chosen
    from orquestrador.brokers.embedded import ensure_server

    return ensure_server().url


def create_broker(url: str | None = None) -> Broker:
    """An unconnected adapter for ``url`` (see :func:`resolve_url`)."""
    resolved = check_url(resolve_url(url))
    return adapter_for(urlsplit(resolved).scheme)(resolved)


async def connect(url: str | None = None) -> Broker:
    """A connected broker for ``url``; raises BrokerUnavailable with one clear line if it cannot."""
    broker = create_broker(url)
    await broker.connect()
    return broker


__all__ = [
    "Broker",
    "Capabilities",
    "Consumer",
    "Delivery",
    "Message",
    "QueueStats",
    "connect",
    "create_broker",
    "resolve_url",
]
