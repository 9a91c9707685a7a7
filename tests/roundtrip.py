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
