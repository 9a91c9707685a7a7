"""Failure paths that lose or double jobs in other queue libraries, checked on every broker:
a retry whose re-publish fails must not be acked away; delayed retries must run once each;
a fetch that simply times out on an empty queue is not an error."""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import uuid
from typing import Any

import pytest

from orquestrador import AsyncOrquestrador, Contexto, Retry, Worker, WorkerOptions
from orquestrador.brokers import Broker, connect
from orquestrador.errors import BrokerError
from orquestrador.plugins import Plugin


class Runs:
    """Handler runs per job, from the thread pool the sync handlers run in."""

    def __init__(self) -> None:
        self.count: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()

    def handler(self, payload: dict[str, Any], ctx: Contexto) -> dict[str, Any]:
        with self._lock:
            self.count[ctx.message_id] += 1
        if ctx.tentativa == 1:
            raise Retry("try again shortly", delay=0.3)
        return {"i": payload["i"], "tentativa": ctx.tentativa}


async def _cleanup(broker: Broker, *queues: str) -> None:
    for queue in queues:
        await broker.delete(queue)


async def test_a_retry_whose_republish_fails_is_not_acked_away(
    broker: Broker, orq: AsyncOrquestrador, monkeypatch: pytest.MonkeyPatch
):
    runs = Runs()
    plugin = Plugin("escavador", f"falha_{uuid.uuid4().hex[:8]}", runs.handler, "tests", takes_context=True)
    original = broker.consume
    failed: list[str] = []

    async def consume(queue: str, **options: Any):  # type: ignore[no-untyped-def]
        consumer = await original(queue, **options)
        fetch = consumer.fetch

        async def fetch_with_broken_nack(n: int, timeout: float):  # type: ignore[no-untyped-def]
            batch = await fetch(n, timeout)
            for delivery in batch:

                async def broken(delay: float = 0.0, d=delivery) -> None:
                    failed.append(d.message_id or "")
                    raise BrokerError("injected: the delayed copy could not be written")

                if delivery.attempt == 1:
                    delivery.nack = broken  # type: ignore[method-assign]
            return batch

        consumer.fetch = fetch_with_broken_nack  # type: ignore[method-assign]
        return consumer

    monkeypatch.setattr(broker, "consume", consume)
    worker = Worker(broker, [plugin], WorkerOptions(visibility_timeout=2, fetch_timeout=0.2))
    running = asyncio.create_task(worker.run())
    try:
        sent = [await orq.iniciar("iniciar_coleta", plugin.nome, {"i": i}) for i in range(3)]
        rows = [await orq.esperar(e.message_id or "", 40) for e in sent]
    finally:
        worker.stop()
        await asyncio.wait_for(running, 30)
        await _cleanup(broker, plugin.fila, orq.responder_para)

    assert len(failed) == 3, "every first attempt's retry copy failed to be written"
    assert [r.estado for r in rows] == ["ok"] * 3, "the unacked original came back after its lease"
    assert [r.tentativa for r in rows] == [2] * 3
    assert sorted(runs.count.values()) == [2, 2, 2], "not lost, and not doubled"


async def test_delayed_retries_run_once_each_with_competing_workers(
    broker: Broker, broker_url: str, orq: AsyncOrquestrador
):
    runs = Runs()
    plugin = Plugin("escavador", f"atraso_{uuid.uuid4().hex[:8]}", runs.handler, "tests", takes_context=True)
    second = await connect(broker_url)
    options = WorkerOptions(visibility_timeout=10, fetch_timeout=0.2)
    workers = [Worker(b, [plugin], options) for b in (broker, second)]
    running = [asyncio.create_task(w.run()) for w in workers]
    try:
        sent = await orq.iniciar_lote("iniciar_coleta", plugin.nome, [{"i": i} for i in range(40)])
        rows = [await orq.esperar(e.message_id or "", 60) for e in sent]
        await asyncio.sleep(1.5)  # a doubled delayed copy would be due by now
    finally:
        for w in workers:
            w.stop()
        await asyncio.wait_for(asyncio.gather(*running), 30)
        await _cleanup(broker, plugin.fila, orq.responder_para)
        await second.close()

    assert [r.estado for r in rows] == ["ok"] * 40
    assert set(runs.count.values()) == {2}, "each job: one failed attempt, one delayed retry"
    assert len(runs.count) == 40


async def test_fetch_timeouts_on_an_idle_queue_are_not_errors(
    broker: Broker, caplog: pytest.LogCaptureFixture
):
    plugin = Plugin("escavador", f"ocioso_{uuid.uuid4().hex[:8]}", lambda p: p, "tests")
    worker = Worker(broker, [plugin], WorkerOptions(fetch_timeout=0.1))
    with caplog.at_level(logging.DEBUG, logger="orquestrador"):
        running = asyncio.create_task(worker.run())
        await asyncio.sleep(2.0)  # many empty fetches
        worker.stop()
        await asyncio.wait_for(running, 30)
    await broker.delete(plugin.fila)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], [
        r.message for r in caplog.records
    ]
