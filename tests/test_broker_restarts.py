"""A NATS server restart is survived: the worker's consumer comes back and nothing is lost.

Runs its own throwaway nats-server on a free loopback port, never the shared one.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from orquestrador import AsyncOrquestrador, Worker, WorkerOptions
from orquestrador.brokers import connect
from orquestrador.errors import BrokerError
from orquestrador.plugins import Plugin
from tests.servers import NatsServer

pytestmark = pytest.mark.nats


def somar(payload: dict) -> dict:
    return {"soma": payload["a"] + payload["b"]}


async def test_worker_and_orchestrator_survive_a_server_restart(tmp_path: Path):
    server = NatsServer(tmp_path / "nats")
    server.start()
    url = server.url
    nome = f"somar_{uuid.uuid4().hex[:6]}"
    broker = await connect(url)
    worker = Worker(broker, [Plugin("escavador", nome, somar, "tests")], WorkerOptions(fetch_timeout=0.5))
    task = asyncio.create_task(worker.run())
    orq = AsyncOrquestrador(url, responder_para=f"res_{nome}")
    await orq.start()
    try:
        before = await orq.iniciar("iniciar_coleta", nome, {"a": 1, "b": 2})
        assert (await orq.esperar(before.message_id, 20)).resultado == {"soma": 3}

        server.stop()
        await asyncio.sleep(1.0)
        server.start()

        after = None
        for _ in range(60):  # publishing retries until the client has reconnected
            try:
                after = await orq.iniciar("iniciar_coleta", nome, {"a": 20, "b": 22})
                break
            except BrokerError:  # while the client reconnects
                await asyncio.sleep(0.5)
        assert after is not None, "could not publish after the restart"
        row = await orq.esperar(after.message_id, 30)
        assert row is not None and row.resultado == {"soma": 42}
    finally:
        worker.stop()
        await asyncio.wait_for(task, 20)
        await orq.close()
        await broker.close()
        server.stop()
