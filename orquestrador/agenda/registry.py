"""Schedules kept in the broker's shared state: definitions, last firings, the leader's lease.

Keys (see :class:`orquestrador.brokers.shared.SharedState`): ``agenda.<id>`` holds a definition
(written by notebooks and the CLI), ``disparo.<id>`` the last occurrence fired (written only by
the scheduler holding the lease ``agenda-lider``), so a pause never races a firing.
"""

from __future__ import annotations

import logging
import time

from orquestrador.agenda.model import Agenda
from orquestrador.brokers.shared import SharedState
from orquestrador.errors import ScheduleError

DEFINITION = "agenda."
FIRED = "disparo."
LEASE = "agenda-lider"

log = logging.getLogger("orquestrador.agenda")


class Agendas:
    """Create, list, pause, resume and remove schedules; read and mark their firings."""

    def __init__(self, state: SharedState) -> None:
        self.state = state

    async def save(self, agenda: Agenda) -> Agenda:
        await self.state.put(DEFINITION + agenda.id, agenda.to_json())
        return agenda

    async def get(self, agenda_id: str) -> Agenda:
        data = await self.state.get(DEFINITION + agenda_id)
        if data is None:
            raise ScheduleError(f"no schedule {agenda_id!r}: `orq agenda list` shows the ids")
        return Agenda.from_json(data)

    async def all(self) -> list[Agenda]:
        """Every readable schedule; one that cannot be read (written by hand, or by a newer
        version) is skipped with a warning, so it never stops the others."""
        agendas: list[Agenda] = []
        for key, value in (await self.state.items(DEFINITION)).items():
            try:
                agendas.append(Agenda.from_json(value))
            except (ValueError, TypeError, KeyError) as exc:
                log.warning("schedule %s skipped: its definition cannot be read (%s)", key, exc)
        return sorted(agendas, key=lambda a: a.criada_em)

    async def pause(self, agenda_id: str) -> Agenda:
        return await self.save((await self.get(agenda_id)).with_changes(pausada=True))

    async def resume(self, agenda_id: str) -> Agenda:
        """Fire again from now on: what fell due while paused is not fired."""
        agenda = await self.get(agenda_id)
        if not agenda.pausada:
            return agenda
        return await self.save(agenda.with_changes(pausada=False, desde=time.time()))

    async def remove(self, agenda_id: str) -> None:
        await self.get(agenda_id)
        await self.state.delete(DEFINITION + agenda_id)
        await self.state.delete(FIRED + agenda_id)

    async def fired(self) -> dict[str, float]:
        """The last occurrence fired, per schedule id."""
        fired: dict[str, float] = {}
        for key, value in (await self.state.items(FIRED)).items():
            try:
                fired[key[len(FIRED) :]] = float(value)
            except ValueError:
                log.warning("last firing of %s unreadable (%r): counted from its definition", key, value[:40])
        return fired

    async def mark_fired(self, agenda_id: str, occurrence: float) -> None:
        await self.state.put(FIRED + agenda_id, repr(occurrence).encode())

    async def leader(self) -> str | None:
        return await self.state.holder(LEASE)


async def listing(agendas: Agendas, now: float | None = None) -> list[dict[str, object]]:
    """One row per schedule, as the CLI, ``orq.agendas()`` and the dashboard show it: how it
    repeats, whether paused, its last firing and its next one (None while paused)."""
    now = time.time() if now is None else now
    fired = await agendas.fired()
    rows: list[dict[str, object]] = []
    for agenda in await agendas.all():
        last = fired.get(agenda.id)
        try:
            nxt = None if agenda.pausada else agenda.next_after(max(now, last or 0.0, agenda.desde))
        except (ScheduleError, ValueError):  # edited by hand: listed, never fired (the scheduler says why)
            nxt = None
        rows.append({
            "id": agenda.id,
            "tipo_evento": agenda.tipo_evento,
            "alvo": agenda.alvo,
            "quando": agenda.quando,
            "pausada": agenda.pausada,
            "perdidas": agenda.perdidas,
            "prioridade": agenda.prioridade,
            "ttl": agenda.ttl,
            "ultima": last,
            "proxima": nxt,
            "responder_para": agenda.responder_para,
            "payload": agenda.payload,
        })  # fmt: skip
    return rows
