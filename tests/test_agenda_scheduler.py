"""The scheduler's lease and bad records, on the in-memory broker (its state lives in the process)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

import pytest

from orquestrador.agenda import Agendas, Scheduler, listing, make
from orquestrador.brokers import connect
from orquestrador.brokers.shared import LocalState
from tests.agenda_scenarios import drain, occurrences


async def test_two_schedulers_in_one_process_fire_each_occurrence_once() -> None:
    url = f"memory://{uuid.uuid4().hex}"
    broker = await connect(url)
    agenda = make("escavador", "eco", {}, responder_para="r", cada=1)
    await Agendas(broker.shared_state()).save(agenda)
    first, second = Scheduler(broker, owner="a", tick=0.05), Scheduler(broker, owner="b", tick=0.05)
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(3.5, stop.set)
    await asyncio.gather(first.run(stop), second.run(stop))
    got = occurrences(await drain(url, "escavador_eco"))
    assert [round(t - agenda.criada_em, 3) for t in got] == [1.0, 2.0, 3.0]
    assert sorted([first.fired, second.fired]) == [0, 3]  # one leads, the other waits


async def test_a_lease_is_held_by_one_owner_until_it_ends_or_is_released() -> None:
    state = LocalState(uuid.uuid4().hex)
    assert await state.lease("x", "a", 0.3)
    assert not await state.lease("x", "b", 0.3)
    assert await state.lease("x", "a", 0.3) and await state.holder("x") == "a"
    time.sleep(0.35)
    assert await state.holder("x") is None and await state.lease("x", "b", 0.3)
    await state.release("x", "a")  # not a's: nothing happens
    assert await state.holder("x") == "b"
    await state.release("x", "b")
    assert await state.lease("x", "a", 0.3)


async def test_an_unreadable_definition_is_skipped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    broker = await connect(f"memory://{uuid.uuid4().hex}")
    agendas = Agendas(broker.shared_state())
    good = await agendas.save(make("escavador", "eco", {}, responder_para="r", cada="1h"))
    await broker.shared_state().put("agenda.broken", b"{not json")
    await broker.shared_state().put("disparo.broken", b"soon")
    with caplog.at_level(logging.WARNING, "orquestrador.agenda"):
        assert [a.id for a in await agendas.all()] == [good.id]
        assert await agendas.fired() == {}
    assert "agenda.broken" in caplog.text and "disparo.broken" in caplog.text


async def test_a_schedule_that_cannot_fire_is_logged_once_and_the_others_fire(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"memory://{uuid.uuid4().hex}"
    broker = await connect(url)
    agendas = Agendas(broker.shared_state())
    good = await agendas.save(make("escavador", "eco", {}, responder_para="r", cada=1))
    bad = make("escavador", "eco", {}, responder_para="r", cron="0 6 * * *").with_changes(fuso="Mars/Base")
    await agendas.save(bad)
    huge = await agendas.save(make("escavador", "eco", {"x": "y" * 2_000_000}, responder_para="r", cada=1))
    scheduler = Scheduler(broker, owner="a", tick=0.05)
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(1.5, stop.set)
    with caplog.at_level(logging.ERROR, "orquestrador.agenda"):
        await scheduler.run(stop)
    assert scheduler.fired_by[good.id] == 1 and scheduler.fired_by[bad.id] == scheduler.fired_by[huge.id] == 0
    assert caplog.text.count(f"schedule {bad.id} skipped") == 1 and "Mars/Base" in caplog.text
    assert caplog.text.count(f"schedule {huge.id} skipped") == 1
    rows = {row["id"]: row for row in await listing(agendas)}
    assert rows[bad.id]["proxima"] is None and rows[good.id]["proxima"] is not None
