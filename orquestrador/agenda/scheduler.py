"""The scheduler (``orq worker agenda``): the lease holder fires each schedule's occurrences.

Any number may run; the one holding the broker-side lease ``agenda-lider`` fires, the others
wait to take over. A leader acts only while its lease is sure to be valid (renewed well before
it ends), so two never fire at once; a leader killed mid-run loses the lease at its ttl and the
next one fires what fell due meanwhile (see the missed policy in :mod:`.model`). Each firing
is published before it is marked, with a message_id derived from (schedule, occurrence): a
leader killed in between makes its successor publish the same id again, which the broker's
dedup drops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections import Counter

from orquestrador import envelope as wire
from orquestrador.agenda.model import Agenda, iso, occurrence_id
from orquestrador.agenda.registry import LEASE, Agendas
from orquestrador.brokers import Broker
from orquestrador.errors import EnvelopeError, OrquestradorError, ScheduleError
from orquestrador.plugins import queue_for
from orquestrador.vocabulary import KIND_OF

log = logging.getLogger("orquestrador.agenda")

DEFAULT_TTL = 5.0  # seconds a leader's lease lasts without renewal: the longest hand-over gap
TICK = 0.25


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Scheduler:
    """Fires schedules while it holds the lease; ``run`` until ``stop`` is set."""

    def __init__(
        self, broker: Broker, *, owner: str | None = None, ttl: float = DEFAULT_TTL, tick: float = TICK
    ) -> None:
        self.broker = broker
        self.agendas = Agendas(broker.shared_state())
        self.owner = owner or default_owner()
        self.ttl = ttl
        self.tick = tick
        self.fired = 0  # firings published by this scheduler
        self.fired_by: Counter[str] = Counter()  # the same, per schedule id
        self._valid_until = 0.0  # monotonic: until when this one surely holds the lease
        self._last: dict[str, float] | None = None  # last firings, read when leadership starts
        self._broken: set[str] = set()  # schedules whose next occurrence cannot be computed (logged once)

    @property
    def leading(self) -> bool:
        return time.monotonic() < self._valid_until and self.agendas.state.still_held(LEASE)

    async def run(self, stop: asyncio.Event) -> None:
        log.info("scheduler %s started (lease ttl %.1f s)", self.owner, self.ttl)
        try:
            while not stop.is_set():
                try:
                    await self.step()
                except OrquestradorError as exc:  # the broker is away: lead again once it is back
                    self._lose(f"{type(exc).__name__}: {exc}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.tick)
        finally:
            if self.leading:
                try:
                    await self.agendas.state.release(LEASE, self.owner)
                except OrquestradorError as exc:
                    log.warning("lease not released (the next leader waits for its ttl): %s", exc)
            log.info("scheduler %s stopped after %d firings", self.owner, self.fired)

    async def step(self) -> None:
        """Renew (or try to take) the lease, then fire whatever is due."""
        if self._valid_until - time.monotonic() < self.ttl * 0.6:
            asked = time.monotonic()
            if await self.agendas.state.lease(LEASE, self.owner, self.ttl):
                if not self.leading:
                    log.info("scheduler %s leads", self.owner)
                    self._last = None
                # Counted from before the request, with a margin for clocks that drift.
                self._valid_until = asked + self.ttl * 0.8
            elif self.leading or self._last is not None:
                self._lose("another scheduler holds the lease")
        if self.leading:
            await self._fire_due()

    def _lose(self, why: str) -> None:
        if self._last is not None:
            log.warning("scheduler %s stops leading: %s", self.owner, why)
        self._valid_until = 0.0
        self._last = None

    async def _fire_due(self) -> None:
        agendas = await self.agendas.all()
        if self._last is None:
            self._last = await self.agendas.fired()
        now = time.time()
        for agenda in agendas:
            if agenda.pausada:
                continue
            try:
                due = agenda.due(self._last.get(agenda.id, agenda.desde), now)
            except (ScheduleError, ValueError, TypeError) as exc:  # edited by hand, or a newer version's
                if agenda.id not in self._broken:
                    log.error("schedule %s skipped: %s", agenda.id, exc)
                    self._broken.add(agenda.id)
                continue
            for occurrence in due:
                if not self.leading:
                    return  # the lease may have passed on: the next leader fires the rest
                try:
                    await self.fire(agenda, occurrence)
                except EnvelopeError as exc:  # this schedule's job cannot be sent (too large): skip it
                    if agenda.id not in self._broken:
                        log.error("schedule %s skipped: its job cannot be sent (%s)", agenda.id, exc)
                        self._broken.add(agenda.id)
                    break
                await self.agendas.mark_fired(agenda.id, occurrence)
                self._last[agenda.id] = occurrence

    async def fire(self, agenda: Agenda, occurrence: float) -> None:
        """Publish one occurrence as a normal job with its own correlation_id and the schedule's
        launch options (priority lane, deadline counted from the occurrence)."""
        fila = queue_for(KIND_OF[agenda.tipo_evento], agenda.alvo)
        options = agenda.options(occurrence)
        env = wire.nova(
            agenda.tipo_evento,  # type: ignore[arg-type]  # checked when the schedule was made
            agenda.payload,
            alvo=agenda.alvo,
            responder_para=agenda.responder_para,
        ).with_changes(
            message_id=occurrence_id(agenda.id, occurrence),
            agenda=agenda.id,
            agendada_para=iso(occurrence),
            **options.fields(),
        )
        target = fila if options.empty else await self.broker.job_queue(fila, options)
        await self.broker.publish(target, wire.encode(env), message_id=env.message_id)
        self.fired += 1
        self.fired_by[agenda.id] += 1
        log.info("schedule %s fired its %s occurrence as %s", agenda.id, iso(occurrence), env.message_id)
