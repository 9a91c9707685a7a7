"""A NATS server restart is survived: the worker's consumer comes back and nothing is lost.

Runs its own throwaway nats-server on a free loopback port, never the shared one.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import uuid
from pathlib import Path

import pytest

from orquestrador import AsyncOrquestrador, Worker, WorkerOptions
from orquestrador.brokers import connect
from orquestrador.brokers.embedded import find_binary
from orquestrador.errors import BrokerError
from orquestrador.plugins import Plugin
from tests.conftest import unreachable

pytestmark = pytest.mark.nats


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, port: int, store: Path) -> None:
        self.port, self.store = port, store
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [find_binary(), "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.store)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        for _ in range(100):
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            subprocess.run(["sleep", "0.05"])
        unreachable("throwaway nats-server")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)


def somar(payload: dict) -> dict:
    return {"soma": payload["a"] + payload["b"]}


async def test_worker_and_orchestrator_survive_a_server_restart(tmp_path: Path):
    server = Server(free_port(), tmp_path / "js")
    server.start()
    url = f"nats://127.0.0.1:{server.port}"
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
