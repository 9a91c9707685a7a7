"""Caps on dead-letter queues, from the environment, for every adapter to apply its own way.

``ORQ_DLQ_MAX_AGE`` (a duration: ``3600``, ``12h``, ``7d``) and ``ORQ_DLQ_MAX_MESSAGES`` (a count)
bound every ``<queue>.dlq`` an adapter declares: NATS as stream limits, Redis by trimming,
RabbitMQ as queue arguments. Unset means unbounded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from orquestrador.settings import parse_count, parse_duration

ENV_DLQ_MAX_AGE = "ORQ_DLQ_MAX_AGE"
ENV_DLQ_MAX_MESSAGES = "ORQ_DLQ_MAX_MESSAGES"


@dataclass(frozen=True)
class DlqLimits:
    """Caps on every dead-letter queue a broker adapter declares; None means unbounded."""

    max_age: float | None = None
    max_messages: int | None = None

    @classmethod
    def from_env(cls) -> DlqLimits:
        age = os.environ.get(ENV_DLQ_MAX_AGE) or None
        count = os.environ.get(ENV_DLQ_MAX_MESSAGES) or None
        return cls(
            max_age=parse_duration(age, ENV_DLQ_MAX_AGE) if age else None,
            max_messages=parse_count(count, ENV_DLQ_MAX_MESSAGES) if count else None,
        )
