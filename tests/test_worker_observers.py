"""A worker tells its observers what happens to each job, in order, once per step."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from orquestrador import Worker, WorkerOptions, errors
from orquestrador.brokers import connect
from orquestrador.plugins import Plugin
from orquestrador.worker.observers import Observer
from tests.conftest import eventually


class Diary(Observer):
    """Writes down every hook with the job's payload number."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, Any]] = []

    def received(self, plugin: Plugin) -> None:
        self.lines.append(("received", plugin.nome))

    def started(self, job: Any) -> None:
        self.lines.append(("started", job.envelope.payload["n"]))

    def failed(self, job: Any, exc: BaseException) -> None:
        self.lines.append(("failed", type(exc).__name__))

    def succeeded(self, job: Any) -> None:
        self.lines.append(("succeeded", job.envelope.payload["n"]))

    def dead_lettered(self, job: Any, erro: Any) -> None:
        self.lines.append(("dead_lettered", erro.tipo))

    def finished(self, job: Any) -> None:
        self.lines.append(("finished", job.envelope.payload["n"]))

    def closed(self, job: Any) -> None:
        self.lines.append(("closed", job.envelope.payload["n"]))


def fazer(payload: dict[str, Any]) -> dict[str, Any]:
    if payload["n"] == 2:
        raise errors.PermanentFailure("no")
    return {"n": payload["n"]}


async def test_an_observer_sees_each_step_of_each_job_in_order():
    broker = await connect("memory://")
    nome = f"obs_{uuid.uuid4().hex[:8]}"
    diary = Diary()
    worker = Worker(broker, [Plugin("escavador", nome, fazer, "tests")], WorkerOptions(concurrency=1),
                    observers=[diary])  # fmt: skip
    await broker.declare(f"escavador_{nome}")
    for n in (1, 2):
        body = {"correlation_id": f"c{n}", "tipo_evento": "iniciar_coleta", "payload": {"n": n},
                "timestamp": "2025-10-14T12:00:00Z"}  # fmt: skip
        await broker.publish(f"escavador_{nome}", json.dumps(body).encode())
    task = asyncio.create_task(worker.run())
    try:
        await eventually(lambda: sum(1 for line in diary.lines if line[0] == "closed") == 2, timeout=20)
    finally:
        worker.stop()
        await task
        await broker.close()
    assert diary.lines == [
        ("received", nome), ("started", 1), ("succeeded", 1), ("finished", 1), ("closed", 1),
        ("received", nome), ("started", 2), ("failed", "PermanentFailure"),
        ("dead_lettered", "PermanentFailure"), ("finished", 2), ("closed", 2),
    ]  # fmt: skip


def test_a_retry_delay_stays_below_its_ceiling_for_any_attempt_count():
    """An attempt count over 1,024 (a broker's, or one restamped from a hostile envelope) made
    the backoff overflow, so the job could not be nacked with a delay."""
    options = WorkerOptions(backoff_base=1.0, backoff_max=30.0)
    for attempt in (1, 2, 10, 1025, 10**6):
        assert 0 <= options.backoff(attempt) <= 30.0
    assert options.backoff(1) <= 1.0
