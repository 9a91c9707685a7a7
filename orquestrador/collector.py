"""Results and lifecycle events into the store, by tasks that never die of what they read.

Two kinds of failure get two answers:

- **The message's fault**: a well-formed result the store cannot record (an extra field SQLite
  cannot bind, a child with an invalid timestamp, anything that makes its insert raise). A batch
  that fails so is recorded again one result at a time; each that still fails goes to the results
  queue's ``.dlq`` with the reason, logged once, and collecting goes on.
- **The store's fault**: disk full, a read-only or locked database, an unreadable file. Nothing
  is acked: the batch is handed back to the broker, the failure is logged loudly, and collecting
  retries with backoff. :class:`Saude` holds the condition (``Orquestrador.saude()``, the
  notebook's jobs view) and a small file beside the store (``saude.json``) lets ``orq stats``, in
  another process, say it too. It clears at the next write that succeeds.

Lifecycle events are best effort: a malformed one is dropped, and while the store fails they
wait in memory (the newest ``MAX_PENDING_EVENTS``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from orquestrador.brokers.base import Delivery
from orquestrador.envelope import Envelope
from orquestrador.errors import BrokerError
from orquestrador.eventos import EventoJob
from orquestrador.store import Store, StoreBusy

T = TypeVar("T")

log = logging.getLogger("orquestrador")

HEALTH_FILE = "saude.json"
BACKOFF_MAX = 30.0
MAX_PENDING_EVENTS = 100_000
_REPEAT_EVERY = 60.0  # seconds between two loud lines about the same storage failure


# What a row's own values can make an insert raise: a type SQLite cannot bind, a constraint, a
# value out of range, a timestamp that does not parse.
_MESSAGE_FAULTS = (
    sqlite3.IntegrityError, sqlite3.InterfaceError, sqlite3.ProgrammingError, sqlite3.DataError,
    ValueError, TypeError, KeyError, OverflowError, RecursionError,
)  # fmt: skip


def storage_failure(exc: BaseException) -> bool:
    """Whether the store, not the message, failed: anything but a fault of the row's own values.

    Unknown errors count as the store's (the message is kept on the broker and retried), never
    as the message's: dead-lettering is for what is proven to be the message. At interpreter
    exit, for instance, ``asyncio.to_thread`` raises ``RuntimeError: cannot schedule new futures
    after shutdown`` for every result, and a closed connection raises ``ProgrammingError``.
    """
    if isinstance(exc, sqlite3.ProgrammingError) and "closed" in str(exc).lower():
        return True
    return not isinstance(exc, _MESSAGE_FAULTS)


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"


@dataclass(frozen=True)
class Saude:
    """What the orchestrator's background writers can tell a user: is the store being written?"""

    ok: bool = True
    erro: str | None = None  # the storage failure, one line
    desde: float | None = None  # epoch seconds it started
    store: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "erro": self.erro, "desde": self.desde, "store": self.store}

    def __str__(self) -> str:
        if self.ok:
            return f"store {self.store} written normally"
        since = time.strftime("%H:%M:%S", time.localtime(self.desde or 0))
        return (
            f"the store {self.store} cannot be written since {since} ({self.erro}): results wait on "
            "the broker and are recorded once it can; free disk space, or fix its permissions or lock"
        )


class Health:
    """The current :class:`Saude`, logged loudly on change and mirrored to ``saude.json``."""

    def __init__(self, store_path: Path) -> None:
        self.store_path = store_path
        self.file = store_path.parent / HEALTH_FILE
        self.state = Saude(store=str(store_path))
        self._logged_at = 0.0

    def failed(self, what: str, exc: BaseException) -> None:
        erro = f"{what}: {_one_line(exc)}"
        now = time.time()
        changed = erro != self.state.erro
        if changed or now - self._logged_at >= _REPEAT_EVERY:
            log.error("STORE FAILURE: %s. Results stay on the broker; retrying with backoff.",
                      Saude(False, erro, self.state.desde or now, str(self.store_path)))  # fmt: skip
            self._logged_at = now
        if changed:
            self.state = Saude(False, erro, self.state.desde or now, str(self.store_path))
            self._mirror()

    def recovered(self) -> None:
        if self.state.ok:
            return
        log.warning("the store %s is written again (it failed for %.0fs)", self.store_path,
                    time.time() - (self.state.desde or time.time()))  # fmt: skip
        self.state = Saude(store=str(self.store_path))
        self._mirror()

    def _mirror(self) -> None:
        """Best effort (the disk may be full): ``orq stats`` reads it from another process."""
        data = {**self.state.as_dict(), "pid": os.getpid(), "atualizado": time.time()}
        with contextlib.suppress(OSError):
            tmp = self.file.with_suffix(".tmp")
            tmp.write_text(json.dumps(data))
            tmp.replace(self.file)


def read_health(home: Path) -> Saude | None:
    """The condition a live orchestrator using ``home`` reported, or None (all well, or none runs)."""
    try:
        data = json.loads((home / HEALTH_FILE).read_text())
        pid = int(data["pid"])
        os.kill(pid, 0)  # raises if that orchestrator is gone: its report is stale
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if data.get("ok", True):
        return None
    return Saude(False, str(data.get("erro")), float(data.get("desde") or 0), str(data.get("store")))


class Backoff:
    """0.5 s, 1 s, 2 s … up to BACKOFF_MAX while the store fails; reset by a success."""

    def __init__(self) -> None:
        self.failures = 0

    def next(self) -> float:
        self.failures += 1
        # The exponent stops growing long after the cap is reached: 2.0 ** 1024 overflows, and
        # a store down for hours (1,024 failures at 30 s) must not end the collector with it.
        return min(BACKOFF_MAX, 0.25 * 2.0 ** min(self.failures, 64))

    def reset(self) -> None:
        self.failures = 0


class StoreDown(Exception):
    """The store cannot write (see :func:`storage_failure`); carries the original error."""


AT_ONCE_MAX = 8  # results a collector records on its loop when the store is free; more go to a thread
# Lifecycle events recorded on the loop when the store is free (~15 us each): a thread writing
# them contends for the GIL with the loop, which then waits out Python's 5 ms switch interval,
# more than once per flush; at 500 jobs/s that was most of the launch and result p99.
EVENTS_AT_ONCE_MAX = 128


async def write(store: Store, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` (a store write) on this event loop if the store is free this instant, else in
    a thread. A lone job's rows take ~0.1 ms to write and a thread hop two to four times that;
    a thread keeps the loop going only while another writer holds the store."""
    try:
        with store.at_once():
            return fn(*args)
    except StoreBusy:
        return await asyncio.to_thread(fn, *args)


async def record_results(
    store: Store, health: Health, good: Sequence[tuple[Delivery, Envelope]]
) -> tuple[list[str], list[tuple[Delivery, str]]]:
    """Record a batch; returns the finished job ids and the results that could not be recorded.

    Raises :class:`StoreDown` when the store itself fails (nothing of the batch is acked then).
    """
    envelopes, bodies = [e for _, e in good], [d.body for d, _ in good]
    try:
        if len(good) <= AT_ONCE_MAX:
            finished = await write(store, store.record_results, envelopes, bodies)
        else:  # a big batch would hold the loop for milliseconds
            finished = await asyncio.to_thread(store.record_results, envelopes, bodies)
    except Exception as exc:
        if storage_failure(exc):
            health.failed("recording results", exc)
            raise StoreDown(exc) from exc
        if len(good) == 1:
            return [], [(good[0][0], f"cannot be recorded in the store: {_one_line(exc)}")]
        finished, refused = [], []
        for item in good:  # one at a time: only the result at fault is refused
            done, bad = await record_results(store, health, [item])
            finished += done
            refused += bad
        return finished, refused
    health.recovered()
    return finished, []


async def settle_refused(refused: Sequence[tuple[Delivery, str]]) -> None:
    """Dead-letter results the store refused, each logged once, never stopping the collector."""
    for delivery, reason in refused:
        log.warning("dead-lettering a result on %s that %s", delivery.queue, reason)
        try:
            await delivery.dead_letter(reason, error_type="StoreError")
        except BrokerError as exc:  # it comes back, and is refused (and dead-lettered) again
            log.error("could not dead-letter a refused result (it will be redelivered): %s", exc)


async def release(deliveries: Sequence[Delivery]) -> None:
    """Hand a batch back to the broker unacked (the store is down: try again later)."""
    for delivery in deliveries:
        with contextlib.suppress(BrokerError):
            await delivery.nack()


async def record_events(store: Store, health: Health, events: list[EventoJob]) -> list[EventoJob]:
    """:func:`write_events` on this loop when few and the store is free, else in a thread (a
    few hundred rows would stall launches and results)."""
    if len(events) <= EVENTS_AT_ONCE_MAX:
        return await write(store, write_events, store, health, events)
    return await asyncio.to_thread(write_events, store, health, events)


def write_events(store: Store, health: Health, events: list[EventoJob]) -> list[EventoJob]:
    """Record events; returns those to keep for later (all of them while the store fails).

    Raises :class:`StoreBusy` inside :meth:`Store.at_once` (see :func:`write`)."""
    try:
        store.record_events(events)
    except StoreBusy:
        raise
    except Exception as exc:
        if storage_failure(exc):
            health.failed("recording lifecycle events", exc)
            return events[-MAX_PENDING_EVENTS:]
        if len(events) == 1:
            log.warning("dropped a lifecycle event the store refused: %s", _one_line(exc))
            return []
        kept: list[EventoJob] = []
        for event in events:
            kept += write_events(store, health, [event])
        return kept
    health.recovered()
    return []
