"""A bad ``responder_para`` costs its own job only (item 3 of #13): refused at intake with the
reason, and never able to make the group-commit publish settle other jobs wrongly."""

from __future__ import annotations

import asyncio
import collections
import json
import uuid

import pytest

from orquestrador import AsyncOrquestrador, Worker, WorkerOptions
from orquestrador import envelope as wire
from orquestrador.brokers import connect
from orquestrador.brokers.base import DLQ_REASON, dlq_of
from orquestrador.errors import ConfigError
from orquestrador.plugins import Plugin
from orquestrador.worker.batching import Publisher
from tests.conftest import eventually

BAD = ["not a queue!", "escavador_outro", "executor_outro", "res.dlq", "x" * 300]


async def test_a_job_with_a_bad_responder_para_is_dead_lettered_and_its_batch_mates_answered_once():
    url = f"memory://{uuid.uuid4().hex}"
    nome = f"rp_{uuid.uuid4().hex[:6]}"
    queue = f"escavador_{nome}"
    runs: collections.Counter[int] = collections.Counter()

    def handler(payload: dict) -> dict:
        runs[payload["i"]] += 1
        return {"i": payload["i"]}

    broker = await connect(url)
    orq = AsyncOrquestrador(url, responder_para=f"res_{nome}")
    await orq.start()
    answers: collections.Counter[str] = collections.Counter()
    orq_record = orq._record

    async def counting(batch):  # type: ignore[no-untyped-def]
        for d in batch:
            answers[json.loads(d.body)["causation_id"]] += 1
        await orq_record(batch)

    orq._record = counting  # type: ignore[method-assign]
    good = [await orq.iniciar("iniciar_coleta", nome, {"i": i}) for i in range(8)]
    for n, name in enumerate(BAD):  # published by hand, as any producer could
        env = wire.nova("iniciar_coleta", {"i": 100 + n}, alvo=nome, responder_para=name)
        await broker.publish(queue, wire.encode(env))
    worker = Worker(broker, [Plugin("escavador", nome, handler, "tests")], WorkerOptions(concurrency=16))
    task = asyncio.create_task(worker.run())  # all of them fetched and finished together
    try:
        rows = [await orq.esperar(e.message_id or "", 10) for e in good]
        dead = await eventually(lambda: _n(broker.peek(dlq_of(queue), 100), len(BAD)))
        await asyncio.sleep(0.5)  # time for any wrong redelivery to show
        assert [r.estado if r else None for r in rows] == ["ok"] * 8
        assert all(answers[e.message_id or ""] == 1 for e in good), answers
        assert all(runs[i] == 1 for i in range(8)) and not any(runs[100 + n] for n in range(len(BAD)))
        reasons = sorted(m.headers[DLQ_REASON] for m in dead)
        assert all(r.startswith("responder_para ") for r in reasons), reasons
        assert len(dead) == len(BAD) and (await broker.stats(queue)).in_flight == 0
    finally:
        worker.stop()
        await task
        await orq.close()
        await broker.close()


async def _n(peek, n: int):  # type: ignore[no-untyped-def]
    found = await peek
    return found if len(found) >= n else None


async def test_one_failed_queue_in_a_shared_publish_fails_only_its_own_jobs():
    broker = await connect(f"memory://{uuid.uuid4().hex}")
    publisher = Publisher(broker)
    outcomes = await asyncio.gather(
        publisher.publish("res_a", b"1", None),
        publisher.publish("bad name!", b"2", None),
        publisher.publish("res_a", b"3", None),
        return_exceptions=True,
    )
    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], ConfigError)
    assert sorted(m.body for m in await broker.peek("res_a")) == [b"1", b"3"]
    await broker.close()


@pytest.mark.parametrize("name", BAD)
def test_an_orchestrator_refuses_a_results_queue_workers_would_refuse(name: str):
    with pytest.raises(ConfigError, match="responder_para"):
        AsyncOrquestrador("memory://", responder_para=name)
