"""Schedules survive a restart of the broker itself (servers whose settings keep data)."""

from __future__ import annotations

import asyncio
import uuid

from orquestrador.agenda import Agendas, make
from orquestrador.brokers import connect
from tests.agenda_scenarios import remove, save
from tests.test_broker_restarts import Server, restarted  # noqa: F401 - the fixture, reused


async def read(url: str) -> tuple[dict[str, object], dict[str, float]]:
    broker = await connect(url)
    try:
        agendas = Agendas(broker.shared_state())
        return {a.id: a for a in await agendas.all()}, await agendas.fired()
    finally:
        await broker.close()


async def mark(url: str, agenda_id: str, occurrence: float) -> None:
    broker = await connect(url)
    try:
        await Agendas(broker.shared_state()).mark_fired(agenda_id, occurrence)
    finally:
        await broker.close()


def test_a_schedule_and_its_last_firing_survive_a_broker_restart(restarted: Server) -> None:  # noqa: F811
    url = restarted.url
    agenda = make(
        "escavador", "eco", {"n": 1}, responder_para="r", cron="0 6 * * *", id=f"r{uuid.uuid4().hex[:8]}"
    )
    asyncio.run(save(url, agenda))
    asyncio.run(mark(url, agenda.id, 1234.5))
    try:
        restarted.restart()
        definitions, fired = asyncio.run(read(url))
        assert definitions[agenda.id] == agenda
        assert fired[agenda.id] == 1234.5
    finally:
        asyncio.run(remove(url, agenda.id))
