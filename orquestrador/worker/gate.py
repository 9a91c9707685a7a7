"""Whether a delivered job may start now: not before its ``executar_em``, never after its ``expira_em``.

Checked at intake on every broker, whatever the broker did at publish (clocks differ, and a
message published by hand carries the fields without any broker option). An early job is held
back with ``Delivery.defer`` — the mechanism retries use (NATS ``nak(delay)``, Redis's delayed
set, RabbitMQ and Kafka delay buckets, SQS visibility, BullMQ's delayed set) — and an expired one
is answered with ``status: erro`` and dead-lettered with reason :data:`EXPIRED`.
"""

from __future__ import annotations

from datetime import datetime

from orquestrador.brokers.base import Broker, Delivery
from orquestrador.envelope import Envelope
from orquestrador.errors import JobExpired

EXPIRED = "expired"  # the dead-letter reason of a job that reached a worker after its expira_em
# A delayed job redelivered this close to its time starts now: holding it back again would cost
# a round trip and a delivery for less than the broker's own timer resolution.
EARLY_SLACK = 0.002


def expired(env: Envelope, now: float) -> bool:
    return env.expira_em is not None and now >= env.expira_em.timestamp()


def early(env: Envelope, now: float) -> float:
    """Seconds until the job may start (0 when it may start now)."""
    if env.executar_em is None:
        return 0.0
    wait = env.executar_em.timestamp() - now
    return wait if wait > EARLY_SLACK else 0.0


def expiry_error(env: Envelope) -> JobExpired:
    deadline = env.expira_em.isoformat() if env.expira_em is not None else "?"
    return JobExpired(
        f"not started by its expira_em ({deadline}): never run. Launch it again with a later "
        "expira_em/ttl, or run more workers so the backlog drains in time"
    )


def spent(env: Envelope, delivery: Delivery, broker: Broker) -> int:
    """Deliveries this job spent waiting for its ``executar_em`` rather than running.

    Holding a job back is a redelivery, which most brokers count; a job launched with a delay
    was (almost always) first delivered early and held back once, so its runs are counted from
    the delivery after that and ``max_tentativas`` stays what the user set. Where the broker held
    it back at publish (``Broker.delays_at_publish``) nothing was spent. A job first delivered
    after its time (its workers were down) gets one run more, never one less.
    """
    if env.executar_em is None or delivery.attempt <= 1 or broker.delays_at_publish:
        return 0
    if delivery.defer_is_free:  # its delayed copy kept the count (Redis, RabbitMQ, Kafka)
        return 0
    return 1 if _was_delayed(env.executar_em, env.timestamp) else 0


def _was_delayed(start: datetime, launched: datetime) -> bool:
    return (start - launched).total_seconds() > EARLY_SLACK


__all__ = ["EXPIRED", "early", "expired", "expiry_error", "spent"]
