"""A schedule's launch options: each firing carries its prioridade and a deadline counted from
its occurrence; ``orq agenda add`` makes schedules from the command line."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta

import pytest
from typer.testing import CliRunner

from orquestrador import Orquestrador, ScheduleError, Worker, WorkerOptions
from orquestrador.agenda import Agenda, Agendas, Scheduler, make
from orquestrador.brokers import connect
from orquestrador.brokers.base import DLQ_REASON, dlq_of
from orquestrador.brokers.support.lanes import lane_of
from orquestrador.cli import app
from orquestrador.plugins import Plugin
from tests.agenda_scenarios import drain, forget, remove, run_scheduler, save
from tests.conftest import BROKERS, broker_url_for, eventually
from tests.workers import ROOT

REAL = [p for p in BROKERS if p.id == "nats"]


async def _fired(url: str, fila: str, prioridade: int) -> list:  # type: ignore[type-arg]
    """Every firing on ``fila`` or its priority lane (brokers without native priority use lanes)."""
    found = await drain(url, fila)
    if lane_of(fila, prioridade) != fila:
        found += await drain(url, lane_of(fila, prioridade))
    return found


def _check_firings(url: str) -> None:
    suffix = uuid.uuid4().hex[:10]
    fila = f"escavador_opt_{suffix}"
    agenda = make("escavador", f"opt_{suffix}", {"n": 1}, responder_para="r", cada=1, id=f"o{suffix}",
                  prioridade=7, ttl=30)  # fmt: skip
    try:
        asyncio.run(save(url, agenda))
        assert asyncio.run(run_scheduler(url, 2.6))[agenda.id] >= 2
        fired = asyncio.run(_fired(url, fila, 7))
        assert len(fired) >= 2
        for env in fired:
            occurrence = datetime.fromisoformat(env.extras["agendada_para"])
            assert env.prioridade == 7
            assert env.expira_em is not None
            assert abs((env.expira_em - occurrence) - timedelta(seconds=30)) < timedelta(milliseconds=5)
    finally:
        asyncio.run(remove(url, agenda.id))
        asyncio.run(forget(url, fila))


def test_each_firing_carries_prioridade_and_a_deadline_from_its_occurrence_in_memory() -> None:
    _check_firings(f"memory://{uuid.uuid4().hex}")


@pytest.mark.parametrize("name", REAL)
def test_each_firing_carries_prioridade_and_a_deadline_on_a_real_broker(
    name: str, request: pytest.FixtureRequest
) -> None:
    _check_firings(broker_url_for(name, request))


async def test_a_firing_caught_up_after_its_ttl_is_never_run_and_dead_lettered_expired() -> None:
    broker = await connect(f"memory://{uuid.uuid4().hex}")
    ran: list[str] = []

    async def handler(payload: dict[str, str]) -> dict[str, str]:
        ran.append(payload["k"])
        return payload

    plugin = Plugin("escavador", f"late_{uuid.uuid4().hex[:8]}", handler, "tests")
    agenda = make("escavador", plugin.nome, {"k": "late"}, responder_para="r", cada=60, ttl=5,
                  tolerancia=0, perdidas="uma")  # fmt: skip
    # Its scheduler was down 10 minutes: the latest missed occurrence (30 s ago) is caught up once.
    back = time.time() - 630
    await Agendas(broker.shared_state()).save(agenda.with_changes(criada_em=back, desde=back))
    scheduler = Scheduler(broker, owner="t")
    await scheduler.step()
    assert scheduler.fired == 1
    worker = Worker(broker, [plugin], WorkerOptions(fetch_timeout=0.2, visibility_timeout=30))
    running = asyncio.create_task(worker.run())
    try:

        async def reasons() -> list[str]:
            return [m.headers.get(DLQ_REASON, "") for m in await broker.peek(dlq_of(plugin.fila), 10)]

        assert await eventually(reasons) == ["expired"]
    finally:
        worker.stop()
        await asyncio.wait_for(running, 30)
        await broker.close()
    assert ran == [], "a firing older than its ttl ran"


def test_definitions_older_than_the_options_still_load() -> None:
    new = make("executor", "eco", {}, responder_para="r", cron="0 6 * * *", prioridade=3, ttl=60)
    old = {k: v for k, v in json.loads(new.to_json()).items() if k not in ("prioridade", "ttl")}
    loaded = Agenda.from_json(json.dumps(old).encode())
    assert (loaded.prioridade, loaded.ttl) == (0, None)
    assert loaded.options(loaded.criada_em).empty  # its firings launch as they did before
    assert Agenda.from_json(new.to_json()) == new


@pytest.mark.parametrize(
    ("option", "value"), [("prioridade", 10), ("prioridade", "9"), ("ttl", 0), ("ttl", -1)]
)
def test_bad_options_are_refused_when_the_schedule_is_made(option: str, value: object) -> None:
    with pytest.raises(ScheduleError, match=option):
        make("escavador", "eco", {}, responder_para="r", cada="1h", **{option: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("name", REAL)
def test_orq_agenda_add_makes_a_schedule_the_api_lists(name: str, request: pytest.FixtureRequest) -> None:
    url = broker_url_for(name, request)
    suffix = uuid.uuid4().hex[:10]
    agenda_id = f"c{suffix}"
    orq = Orquestrador(url)
    try:
        result = CliRunner().invoke(app, [
            "agenda", "add", "escavador", f"cli_{suffix}", '{"url": "https://example.org"}',
            "--cron", "0 6 * * *", "--fuso", "America/Sao_Paulo", "--prioridade", "4", "--ttl", "900",
            "--id", agenda_id, "-b", url,
        ])  # fmt: skip
        assert result.exit_code == 0, result.output
        # 06:00 in São Paulo (UTC-3, no DST since 2019) is 09:00 UTC.
        assert f"schedule {agenda_id}: cron 0 6 * * * America/Sao_Paulo, next " in result.output
        assert "09:00:00 UTC" in result.output
        row = orq.agendas().set_index("id").loc[agenda_id]
        assert row["quando"] == "cron 0 6 * * * America/Sao_Paulo"
        assert row["payload"] == {"url": "https://example.org"}
        assert row["proxima"].hour == 9
        assert (row["prioridade"], row["ttl"]) == (4, 900.0)
        listed = CliRunner().invoke(app, ["agenda", "list", "-b", url], env={"COLUMNS": "200"})
        line = next(line for line in listed.output.splitlines() if agenda_id in line)
        assert [cell.strip() for cell in line.split("│")[5:7]] == ["4", "900 s"], listed.output
    finally:
        orq.close()
        asyncio.run(remove(url, agenda_id))


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["{}"], "exactly one of cada"),
        (["{not json", "--cada", "1h"], "PAYLOAD_JSON is not valid JSON"),
        (["{}", "--cada", "1x"], "not an interval"),
        (["{}", "--cron", "0 6 * *"], "not a cron expression"),
        (["{}", "--cron", "0 6 * * *", "--fuso", "Mars/Olympus"], "not a known time zone"),
        (["{}", "--cada", "1h", "--ttl", "0"], "ttl must be more than 0"),
        (["{}", "--cada", "1h", "--perdidas", "todas"], "perdidas must be"),
    ],
)
def test_orq_agenda_add_refuses_bad_input_with_exit_2(args: list[str], says: str) -> None:
    # memory://: refused before any broker is reached, by the same check as orq.agendar.
    command = [sys.executable, "-m", "orquestrador.cli", "agenda", "add", "escavador", "eco", *args,
               "-b", "memory://"]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert says in " ".join(done.stderr.split())
