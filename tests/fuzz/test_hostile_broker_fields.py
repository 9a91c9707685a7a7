"""Hostile broker-level fields (headers, ids, attempt counters) cost their own message only.

Each broker's plain client puts messages with a valid body but unreadable fields on a queue,
between good jobs: the worker dead-letters each with the reason and answers every good job.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from orquestrador import AsyncOrquestrador, Worker, WorkerOptions
from orquestrador.brokers import connect
from orquestrador.brokers.base import DLQ_REASON, dlq_of
from orquestrador.plugins import Plugin
from tests.conftest import broker_url_for, eventually
from tests.hostile_fields import inject

REAL = [
    pytest.param("nats", marks=pytest.mark.nats),
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param("rabbitmq", marks=pytest.mark.rabbitmq),
    pytest.param("bullmq", marks=pytest.mark.bullmq),
]


@pytest.mark.parametrize("name", REAL)
async def test_unreadable_broker_fields_are_dead_lettered_and_good_jobs_around_them_run(
    name: str, request: pytest.FixtureRequest
):
    url = broker_url_for(name, request)
    nome = f"hf_{uuid.uuid4().hex[:8]}"
    queue = f"escavador_{nome}"
    broker = await connect(url)
    await broker.declare(queue)
    orq = AsyncOrquestrador(url, responder_para=f"res_{nome}")
    await orq.start()
    worker = Worker(broker, [Plugin("escavador", nome, lambda p: {"ok": True}, "tests")],
                    WorkerOptions(visibility_timeout=5, concurrency=4))  # fmt: skip
    task: asyncio.Task[None] | None = None
    try:
        before = [await orq.iniciar("iniciar_coleta", nome, {"i": i}) for i in range(5)]
        hostile = f"hostil-{nome}"
        bad = await inject(name, url, queue, hostile)
        after = [await orq.iniciar("iniciar_coleta", nome, {"i": i}) for i in range(5)]
        task = asyncio.create_task(worker.run())
        rows = [await orq.esperar(e.message_id or "", 30) for e in before + after]
        assert [r.estado if r else None for r in rows] == ["ok"] * 10
        dead = await eventually(lambda: _dead(broker, queue, bad), timeout=30)
        assert not task.done(), "the worker is still serving"
    finally:
        worker.stop()
        if task is not None:
            await asyncio.wait_for(task, 30)
        await orq.close()
        await broker.delete(queue)
        await broker.delete(orq.responder_para)
        await broker.close()
    assert len(dead) == bad
    for message in dead:
        assert message.headers[DLQ_REASON].startswith("unreadable broker fields: "), message.headers
        assert len(message.headers[DLQ_REASON]) < 500
        if message.body.startswith(b"{"):
            assert json.loads(message.body)["correlation_id"] == hostile


async def _dead(broker, queue: str, expected: int):  # type: ignore[no-untyped-def]
    dead = await broker.peek(dlq_of(queue), limit=100)
    return dead if len(dead) >= expected else None
