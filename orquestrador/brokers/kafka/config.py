"""A Kafka URL read into aiokafka's client options, and the consumer group's timeouts.

``kafka://host1:9092,host2:9092`` lists the bootstrap servers; ``user:pass@`` is SASL (PLAIN,
or ``?sasl_mechanism=SCRAM-SHA-256``/``SCRAM-SHA-512``), over TLS with ``kafkas://`` (the CA and
client certificate as for every broker, :mod:`orquestrador.brokers.tls`). ``?partitions=`` and
``?replication=`` apply to the topics the toolkit creates. Errors show the URL redacted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from orquestrador.brokers.tls import ssl_context
from orquestrador.errors import ConfigError
from orquestrador.settings import TlsPaths

OPTIONS = ("partitions", "replication", "sasl_mechanism")
SASL = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
MIN_SESSION_MS = 6_000  # Kafka's default group.min.session.timeout.ms
DEFAULT_PARTITIONS = 8  # per job topic the toolkit creates: up to eight workers of a queue busy at once


@dataclass(frozen=True)
class KafkaConfig:
    options: dict[str, Any]  # for every aiokafka client (credentials too: never logged)
    partitions: int
    replication: int  # 0: as many copies as the cluster allows, up to three

    @classmethod
    def from_url(cls, url: str, where: str, tls: TlsPaths | None) -> KafkaConfig:
        """``url`` without its TLS parameters; ``where`` is how errors show it (redacted)."""
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        unknown = sorted(set(query) - set(OPTIONS))
        if unknown:
            raise ConfigError(
                f"unknown option {', '.join(unknown)} in Kafka URL {where}: use {', '.join(OPTIONS)}"
            )
        bootstrap = parts.netloc.rpartition("@")[2]
        if not bootstrap:
            raise ConfigError(f"Kafka URL {where} names no server, e.g. kafka://127.0.0.1:9092")
        options: dict[str, Any] = {"bootstrap_servers": bootstrap.split(","), "client_id": "orquestrador"}
        mechanism = query.get("sasl_mechanism", "PLAIN").upper()
        if mechanism not in SASL:
            raise ConfigError(
                f"sasl_mechanism {mechanism!r} in Kafka URL {where}: use one of {', '.join(SASL)}"
            )
        if parts.username is not None or parts.password is not None:
            options.update(security_protocol="SASL_SSL" if tls else "SASL_PLAINTEXT",
                           sasl_mechanism=mechanism, sasl_plain_username=unquote(parts.username or ""),
                           sasl_plain_password=unquote(parts.password or ""))  # fmt: skip
        elif tls:
            options["security_protocol"] = "SSL"
        if tls is not None:
            options["ssl_context"] = ssl_context(tls)
        partitions = _positive(query.get("partitions"), "partitions", where, default=DEFAULT_PARTITIONS)
        replication = _positive(query.get("replication"), "replication", where, default=0)
        return cls(options, partitions, replication)


def group_timeouts(visibility: float) -> dict[str, int]:
    """A dead member loses its partitions after the visibility timeout (at least Kafka's 6 s
    minimum session); aiokafka heartbeats in the background, so a busy worker stays in."""
    session = max(MIN_SESSION_MS, int(visibility * 1000))
    beat = max(250, min(3000, int(visibility * 250)))  # a rebalance waits for every member's beat
    return {"session_timeout_ms": session, "heartbeat_interval_ms": beat,
            "rebalance_timeout_ms": session, "max_poll_interval_ms": 86_400_000}  # fmt: skip


def quiet_driver() -> None:
    """aiokafka logs each expected, retried condition (a leader moving, a rebalance, a broker
    restarting) at ERROR; unless configured, it stays quiet and this adapter reports failures in
    one line each (as with pika)."""
    if logging.getLogger("aiokafka").level == logging.NOTSET:
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)


def _positive(value: str | None, name: str, where: str, *, default: int) -> int:
    if value is None:
        return default
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"invalid {name} {value!r} in Kafka URL {where}: use a positive whole number")
    return int(value)
