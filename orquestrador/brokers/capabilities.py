"""What a broker does by itself, declared by each adapter (see :class:`Capabilities`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class Capabilities:
    """What a broker does by itself. Each adapter declares it; what it lacks, the toolkit supplies
    (:mod:`orquestrador.brokers.support`), the runtime asks it instead of probing attributes, and
    the contract suite and the README's "where they differ" table are checked against it.

    Every field is a plain yes/no. Adapters declare what they lack, so the list of fallbacks they
    need reads at a glance: ``Capabilities.lacking("server_dedup", "server_lease")``.
    """

    # A message_id published again within 120 s is dropped by the server, whoever sends it
    # (else: support.dedup remembers this connection's ids only).
    server_dedup: bool
    # ``Delivery.attempt`` is the broker's own delivery count (else: a header restamped by the
    # adapter on every redelivery, support.attempts).
    delivery_count: bool
    # An unacked message returns by itself after the visibility timeout and heartbeat() renews it
    # on the server (else: a client-side lease, support.lease).
    server_lease: bool
    # ``nack(delay)`` holds the message back on the broker (else: delay buckets, support.delays).
    delayed_redelivery: bool
    # Deliveries carry a ``position``, so replay tells old dead letters from new ones.
    positions: bool
    # ``peek`` leaves messages exactly as they were (RabbitMQ's marks them redelivered).
    side_effect_free_peek: bool
    # Rate-limit slots are shared by every process using the broker (else: per process).
    shared_slots: bool
    # ``stats().in_flight`` counts every consumer's unsettled messages, not only this process's.
    global_in_flight: bool
    # ``stats().oldest_age`` is known.
    oldest_age: bool
    # Queues are seen by other processes (``memory://`` lives inside one process).
    cross_process: bool
    # The adapter counts its reconnects in ``Broker.reconnects`` (else a fetch that works again
    # after failing is the only sign of one).
    counts_reconnects: bool
    # ``subscribe_topic(..., durable=NAME)`` keeps what is published while the subscriber is away
    # and delivers it, once per name, when it comes back (else: live subscriptions only).
    durable_topics: bool

    @classmethod
    def lacking(cls, *names: str) -> Capabilities:
        """Everything but ``names`` (a misspelt name is a TypeError, not a silent yes)."""
        return cls.everything().without(*names)

    @classmethod
    def everything(cls) -> Capabilities:
        return cls(**dict.fromkeys(cls.__dataclass_fields__, True))

    def without(self, *names: str) -> Capabilities:
        return dataclasses.replace(self, **dict.fromkeys(names, False))

    def lacks(self) -> list[str]:
        """Names of what the broker does not do itself, for messages and docs."""
        return [name for name, value in self.__dict__.items() if not value]
