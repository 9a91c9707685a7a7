"""Broker adapters, chosen by URL scheme.

``memory://`` in-process (unit tests), ``nats://`` / ``tls://`` NATS JetStream,
``redis://`` / ``rediss://`` Redis Streams, ``amqp://`` / ``amqps://`` RabbitMQ.
With no URL at all, :mod:`orquestrador.brokers.embedded` starts or attaches to a local
nats-server so everything works on a fresh machine.
"""

from __future__ import annotations

import importlib
from urllib.parse import urlsplit

from orquestrador.brokers.base import Broker, Consumer, Delivery, Message, QueueStats
from orquestrador.errors import ConfigError
from orquestrador.settings import broker_url, check_url

_ADAPTERS = {
    "memory": ("orquestrador.brokers.memory", "MemoryBroker"),
    "nats": ("orquestrador.brokers.nats", "NatsBroker"),
    "tls": ("orquestrador.brokers.nats", "NatsBroker"),
    "redis": ("orquestrador.brokers.redis", "RedisBroker"),
    "rediss": ("orquestrador.brokers.redis", "RedisBroker"),
    "amqp": ("orquestrador.brokers.rabbitmq", "RabbitMQBroker"),
    "amqps": ("orquestrador.brokers.rabbitmq", "RabbitMQBroker"),
}


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
    scheme = urlsplit(resolved).scheme
    module_name, class_name = _ADAPTERS[scheme]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("orquestrador"):
            raise ConfigError(f"the {scheme}:// broker is not available in this version") from None
        raise ConfigError(
            f"the {scheme}:// broker needs the '{exc.name}' package: pip install orquestrador"
        ) from None
    cls: type[Broker] = getattr(module, class_name)
    return cls(resolved)  # type: ignore[call-arg]


async def connect(url: str | None = None) -> Broker:
    """A connected broker for ``url``; raises BrokerUnavailable with one clear line if it cannot."""
    broker = create_broker(url)
    await broker.connect()
    return broker


__all__ = [
    "Broker",
    "Consumer",
    "Delivery",
    "Message",
    "QueueStats",
    "connect",
    "create_broker",
    "resolve_url",
]
