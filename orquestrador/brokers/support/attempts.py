"""Attempt counting for brokers that keep no delivery count (``delivery_count=False``).

The count travels with the message in the ``x-orq-attempts`` header: the attempts already made
before this copy was written; ``Delivery.attempt`` is that plus one. What the broker must tell is
only whether it handed this copy out before (AMQP's ``redelivered`` flag). A redelivered copy is
*restamped* before anyone sees it: a copy with the count plus one is published (confirmed), then
the original is acked. So the attempt grows on every redelivery, a crashed or lost consumer's
included, and a message that kills every worker reaches ``max_tentativas`` instead of looping.
A restamped copy moves to the back of its queue; dead-letter queues are not restamped.
``x-`` headers stay out of ``Delivery.headers``, so a replayed dead letter starts at attempt 1.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypeVar

from orquestrador.brokers.intake import FieldReader
from orquestrador.errors import BrokerError

ATTEMPTS_HEADER = "x-orq-attempts"

log = logging.getLogger(__name__)


class Raw(Protocol):
    """A message as the broker handed it to this client, not yet settled."""

    @property
    def body(self) -> bytes: ...

    @property
    def previous(self) -> int:
        """Attempts made before this copy (:func:`previous`)."""

    @property
    def gone(self) -> bool:
        """The broker took it back already (its channel closed, its consumer went away)."""

    def settle(self, *, ack: bool) -> bool:
        """Ack it, or hand it back to its queue now; False if that could not reach the broker."""


R = TypeVar("R", bound=Raw)
R_contra = TypeVar("R_contra", bound=Raw, contravariant=True)


class Copier(Protocol[R_contra]):
    """How an adapter publishes a copy of ``raw`` (same body, ids and metadata) with a new count."""

    async def send_copy(
        self, queue: str, raw: R_contra, *, attempts: int, headers: dict[str, str] | None = None
    ) -> None:
        """Publish (confirmed) to ``queue``; ``headers`` replace the public ones when given."""


def previous(table: Mapping[Any, Any] | None, redelivered: bool) -> int:
    """Attempts made before this copy: the stamped count, plus one if the broker redelivered it.

    A forged count reads as 0 here; reading the delivery's fields reports it as its problem.
    """
    stamped = FieldReader().count((table or {}).get(ATTEMPTS_HEADER), ATTEMPTS_HEADER)
    return stamped + (1 if redelivered else 0)


def stamped_count(table: Mapping[Any, Any] | None) -> Any:
    """The raw stamped count, for :meth:`~orquestrador.brokers.intake.DeliveryFields.read` to
    check (one that is not a count dead-letters the delivery)."""
    return table.get(ATTEMPTS_HEADER) if isinstance(table, dict) else None


def stamped(headers: dict[str, Any], attempts: int) -> dict[str, Any]:
    """``headers`` with the count of a copy (none at 0, so a fresh copy looks like a new message)."""
    table = dict(headers)
    if attempts:
        table[ATTEMPTS_HEADER] = attempts
    return table


async def restamp(copier: Copier[R], queue: str, raw: R) -> bool:
    """Count a redelivery: a copy with the count plus one (confirmed), then ack the original.

    False when the copy could not be published: the caller hands the original over as it is.
    """
    try:
        await copier.send_copy(queue, raw, attempts=raw.previous)
    except BrokerError as exc:
        log.warning("cannot restamp a redelivered message on %s (%s); handing it over as it is", queue, exc)
        return False
    raw.settle(ack=True)
    return True


async def hand_back(copier: Copier[R], queue: str, raws: Sequence[R]) -> None:
    """Return prefetched messages nobody fetched as copies with their count unchanged, so they
    do not count an attempt nobody made (a copy that fails leaves its original to the broker)."""
    waiting = [raw for raw in raws if not raw.gone]
    sends = [copier.send_copy(queue, raw, attempts=raw.previous) for raw in waiting]
    results = await asyncio.gather(*sends, return_exceptions=True)
    for raw, result in zip(waiting, results, strict=True):
        raw.settle(ack=not isinstance(result, BaseException))
