"""A worker and an orchestrator on one broker URL, for tests that send jobs through a broker they
restart, secure or break (TLS, auth, reconnect tests).

::

    async with worker_and_orchestrator(url) as (orq, nome):
        job = await orq.iniciar("iniciar_coleta", nome, {"a": 1, "b": 2})
        assert (await orq.esperar(job.message_id, 30)).resultado == {"soma": 3}
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from orquestrador import AsyncOrquestrador, Worker, WorkerOptions
from orquestrador.brokers import connect
from orquestrador.errors import BrokerError
from orquestrador.plugins import Plugin


def somar(payload: dict) -> dict:
    return {"soma": payload["a"] + payload["b"]}


@contextlib.asynccontextmanager
async def worker_and_orchestrator(
    url: str,
    handler: Callable[[dict], Any] = somar,
    options: WorkerOptions | None = None,
) -> AsyncIterator[tuple[AsyncOrquestrador, str]]:
    """A running worker of escavador ``nome`` (by default it adds ``a`` and ``b``) and a started
    orchestrator whose results queue is ``res_<nome>``."""
    nome = f"somar_{uuid.uuid4().hex[:6]}"
    broker = await connect(url)
    plugin = Plugin("escavador", nome, handler, "tests")
    worker = Worker(broker, [plugin], options or WorkerOptions(fetch_timeout=0.5))
    task = asyncio.create_task(worker.run())
    orq = AsyncOrquestrador(url, responder_para=f"res_{nome}")
    await orq.start()
    try:
        yield orq, nome
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)
        await orq.close()
        for queue in (nome, f"res_{nome}"):
            with contextlib.suppress(BrokerError):
                await broker.delete(queue)
        await broker.close()


async def answer_of(broker: Any, plugin: Plugin, correlation_id: str) -> dict[str, Any] | None:
    """Serve ``plugin`` on ``broker`` until the result of chain ``correlation_id`` arrives on the
    default results queue (a hand-made job names no ``responder_para``); others are given back."""
    import json

    from orquestrador.envelope import DEFAULT_RESULTS_QUEUE

    worker = Worker(broker, [plugin], WorkerOptions())
    task = asyncio.create_task(worker.run())
    results = await broker.consume(DEFAULT_RESULTS_QUEUE, visibility_timeout=5)
    try:
        for _ in range(100):
            for delivery in await results.fetch(50, timeout=0.5):
                data = json.loads(delivery.body)
                if data["correlation_id"] == correlation_id:
                    await delivery.ack()
                    return dict(data)
                await delivery.nack()
        return None
    finally:
        worker.stop()
        await task
        await results.close()
