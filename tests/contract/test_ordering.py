"""When and in what order jobs run, on every broker: priority under a backlog, delays, expiry.

One behaviour whatever the broker does natively (see the README's table): urgent jobs launched
after a backlog overtake it, a delayed job starts on time and not before, and a job not started
by its deadline is never run, dead-lettered as ``expired`` and answered with ``status: erro``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from orquestrador import AsyncOrquestrador, Contexto, Worker, WorkerOptions
from orquestrador.brokers import Broker
from orquestrador.brokers.base import DLQ_REASON, dlq_of
from orquestrador.brokers.support.lanes import lanes_of
from orquestrador.plugins import Plugin
from tests.conftest import eventually


class Record:
    """What ran, in which order and when (a slow async handler: one job at a time)."""

    def __init__(self, pause: float = 0.0) -> None:
        self.order: list[str] = []
        self.started: dict[str, float] = {}
        self.pause = pause

    async def handler(self, payload: dict[str, Any], ctx: Contexto) -> dict[str, Any]:
        self.started.setdefault(ctx.message_id, time.time())
        self.order.append(payload["k"])
        if self.pause:
            await asyncio.sleep(self.pause)
        return {"k": payload["k"]}


def _plugin(record: Record, prefix: str) -> Plugin:
    nome = f"{prefix}_{uuid.uuid4().hex[:8]}"
    return Plugin("escavador", nome, record.handler, "tests", takes_context=True, concurrency=1)


async def _cleanup(broker: Broker, plugin: Plugin, orq: AsyncOrquestrador) -> None:
    for queue in [plugin.fila, *lanes_of(plugin.fila), orq.responder_para]:
        await broker.delete(queue)


async def test_urgent_jobs_overtake_a_backlog(broker: Broker, orq: AsyncOrquestrador) -> None:
    record = Record(pause=0.005)
    plugin = _plugin(record, "prio")
    worker = Worker(broker, [plugin], WorkerOptions(fetch_timeout=0.2, visibility_timeout=30))
    running = asyncio.create_task(worker.run())
    try:
        normal = await orq.iniciar_lote("iniciar_coleta", plugin.nome, [{"k": f"n{i}"} for i in range(300)])
        urgent = await orq.iniciar_lote(
            "iniciar_coleta", plugin.nome, [{"k": f"u{i}"} for i in range(10)], prioridade=9
        )
        rows = [await orq.esperar(e.message_id or "", 120) for e in [*urgent, *normal]]
    finally:
        worker.stop()
        await asyncio.wait_for(running, 30)
        await _cleanup(broker, plugin, orq)

    assert [r.estado for r in rows if r] == ["ok"] * 310
    normal_runs = [i for i, k in enumerate(record.order) if k.startswith("n")]
    urgent_runs = [i for i, k in enumerate(record.order) if k.startswith("u")]
    assert len(urgent_runs) == 10
    assert max(urgent_runs) < normal_runs[49], (
        f"urgent jobs ran at {urgent_runs}, the 50th normal one at {normal_runs[49]}"
    )


async def test_a_delayed_job_starts_on_time_and_not_before(broker: Broker, orq: AsyncOrquestrador) -> None:
    record = Record()
    plugin = _plugin(record, "atraso")
    worker = Worker(broker, [plugin], WorkerOptions(fetch_timeout=0.2, visibility_timeout=30))
    running = asyncio.create_task(worker.run())
    try:
        env = await orq.iniciar("iniciar_coleta", plugin.nome, {"k": "d"}, atraso=2.5)
        now = await orq.iniciar("iniciar_coleta", plugin.nome, {"k": "now"})
        row = await orq.esperar(env.message_id or "", 30)
        first = await orq.esperar(now.message_id or "", 30)
    finally:
        worker.stop()
        await asyncio.wait_for(running, 30)
        await _cleanup(broker, plugin, orq)

    assert env.executar_em is not None
    due = env.executar_em.timestamp()
    started = record.started[env.message_id or ""]
    assert row is not None and row.estado == "ok"
    assert row.tentativa == 1, "waiting for its time is not an attempt"
    assert first is not None and first.estado == "ok"
    assert record.order[0] == "now", "a job launched later without a delay ran first"
    assert started >= due, f"started {due - started:.3f}s early"
    assert started - due < 1.0, f"started {started - due:.3f}s late"


async def test_an_expired_job_is_never_run(broker: Broker, orq: AsyncOrquestrador) -> None:
    record = Record()
    plugin = _plugin(record, "ttl")
    await broker.declare(plugin.fila)
    env = await orq.iniciar("iniciar_coleta", plugin.nome, {"k": "late"}, ttl=0.5)
    urgent = await orq.iniciar("iniciar_coleta", plugin.nome, {"k": "late9"}, ttl=0.5, prioridade=9)
    await asyncio.sleep(1.0)  # no worker until both deadlines passed
    worker = Worker(broker, [plugin], WorkerOptions(fetch_timeout=0.2, visibility_timeout=30))
    running = asyncio.create_task(worker.run())
    try:
        rows = [await orq.esperar(e.message_id or "", 30) for e in (env, urgent)]

        async def dead_letters() -> list[str]:
            found = await broker.peek(dlq_of(plugin.fila), 10)
            return [m.headers.get(DLQ_REASON, "") for m in found] if len(found) == 2 else []

        reasons = await eventually(dead_letters)
    finally:
        worker.stop()
        await asyncio.wait_for(running, 30)
        await _cleanup(broker, plugin, orq)

    assert record.order == [], "an expired job ran"
    for row in rows:
        # answered with status erro; the store calls an erro whose job went to the DLQ so
        assert row is not None and row.estado == "dead-lettered"
        assert row.erro is not None and row.erro["tipo"] == "JobExpired"
    assert reasons == ["expired", "expired"]


async def test_a_lone_job_is_not_slowed_by_the_lanes(broker: Broker, orq: AsyncOrquestrador) -> None:
    """An idle worker waits long on its queue (fetch_timeout 3 s here), and looks at the lanes
    in between: a lone job of either priority starts about as fast as on a queue without lanes."""
    record = Record()
    plugin = _plugin(record, "so")
    worker = Worker(broker, [plugin], WorkerOptions(fetch_timeout=3.0, visibility_timeout=30))
    running = asyncio.create_task(worker.run())
    waits: list[float] = []
    try:
        warm = await orq.iniciar("iniciar_coleta", plugin.nome, {"k": "warm"})  # consumers ready
        await orq.esperar(warm.message_id or "", 60)
        for prioridade in (0, 9):
            await asyncio.sleep(1.2)  # idle: the worker is inside a long wait
            sent = time.time()
            env = await orq.iniciar("iniciar_coleta", plugin.nome, {"k": "x"}, prioridade=prioridade)
            await orq.esperar(env.message_id or "", 30)
            waits.append(record.started[env.message_id or ""] - sent)
    finally:
        worker.stop()
        await asyncio.wait_for(running, 30)
        await _cleanup(broker, plugin, orq)

    limit = 1.0 + broker.lane_poll  # a broker's own delivery latency, plus one look at the lanes
    assert max(waits) < limit, f"lone jobs waited {[round(w, 3) for w in waits]}s to start"
