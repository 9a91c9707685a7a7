"""The orchestrator's collecting never dies: a result the store cannot record is dead-lettered,
and a store that cannot be written holds results on the broker until it can (item 2 of #13)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import uuid
from collections.abc import AsyncIterator
from typing import Any

from typer.testing import CliRunner

from orquestrador import AsyncOrquestrador
from orquestrador import envelope as wire
from orquestrador.brokers import connect
from orquestrador.brokers.base import DLQ_ERROR_TYPE, DLQ_REASON, dlq_of
from orquestrador.cli import app
from orquestrador.envelope import Envelope
from tests.conftest import eventually


def resultado(job: Envelope, **extras: Any) -> bytes:
    env = Envelope(
        correlation_id=job.correlation_id, tipo_evento="resultado_coleta", payload={"ok": True},
        timestamp=wire.now(), message_id=wire.new_id(), causation_id=job.message_id, alvo=job.alvo,
        tentativa=1, status="ok", **extras,
    )  # fmt: skip
    return wire.encode(env)


@contextlib.asynccontextmanager
async def collecting(results: str, store_timeout: float | None = None) -> AsyncIterator[tuple[Any, Any]]:
    """A started orchestrator and a second connection that publishes to it by hand."""
    url = f"memory://{uuid.uuid4().hex}"
    orq = AsyncOrquestrador(url, responder_para=results)
    if store_timeout is not None:
        orq.store.timeout = store_timeout  # how long a write waits for a lock (default 30 s)
    await orq.start()
    broker = await connect(url)
    try:
        yield orq, broker
    finally:
        await broker.close()
        await orq.close()


async def test_a_result_the_store_cannot_record_is_dead_lettered_and_later_results_are_recorded():
    async with collecting("res_poison") as (orq, broker):
        jobs = [await orq.iniciar("iniciar_coleta", "x", {"i": i}) for i in range(4)]
        poisons = [
            resultado(jobs[0], worker={"um": "objeto"}),  # SQLite cannot bind a dict
            resultado(jobs[1], filhos=[{"message_id": "f1", "timestamp": "ontem"}]),  # no such date
        ]
        for body in poisons:
            await broker.publish("res_poison", body)
        for job in jobs[2:]:
            await broker.publish("res_poison", resultado(job))
        await eventually(lambda: all(orq.store.job(j.message_id or "").estado == "ok" for j in jobs[2:]))
        dead = await eventually(lambda: _at_least(broker.peek(dlq_of("res_poison")), 2))
        assert not orq._tasks[0].done(), "the collecting task is alive"
        assert sorted(m.body for m in dead) == sorted(poisons)
        for message in dead:
            assert message.headers[DLQ_REASON].startswith("cannot be recorded in the store: ")
            assert message.headers[DLQ_ERROR_TYPE] == "StoreError"
        assert orq.store.job(jobs[0].message_id or "").estado == "queued"  # untouched
        await broker.publish("res_poison", resultado(jobs[0]))  # a good copy still lands
        await eventually(lambda: orq.store.job(jobs[0].message_id or "").estado == "ok")
        assert orq.saude().ok


async def _at_least(peek, n: int):  # type: ignore[no-untyped-def]
    found = await peek
    return found if len(found) >= n else None


async def test_a_store_that_cannot_be_written_holds_results_on_the_broker_and_says_so():
    async with collecting("res_locked", store_timeout=0.3) as (orq, broker):
        blocker = sqlite3.connect(orq.store.path, isolation_level=None)
        try:
            await _locked_then_free(orq, broker, blocker)
        finally:
            blocker.close()


async def _locked_then_free(orq: Any, broker: Any, blocker: sqlite3.Connection) -> None:
    jobs = [await orq.iniciar("iniciar_coleta", "x", {"i": i}) for i in range(3)]
    blocker.execute("BEGIN EXCLUSIVE")  # another process holds the database
    for job in jobs:
        await broker.publish("res_locked", resultado(job))
    await eventually(lambda: not orq.saude().ok, timeout=10)
    saude = orq.saude()
    assert "locked" in (saude.erro or "") and str(orq.store.path) in str(saude)
    stats = await broker.stats("res_locked")
    assert stats.depth + stats.in_flight == 3, "results wait on the broker, not acked"
    health = json.loads((orq.home / "saude.json").read_text())
    assert health["ok"] is False and "locked" in health["erro"]
    shown = CliRunner().invoke(app, ["stats"])
    assert "cannot be written" in shown.output and "locked" in shown.output, shown.output

    blocker.execute("ROLLBACK")  # the lock goes away: everything is recorded
    await eventually(lambda: all(orq.store.job(j.message_id or "").estado == "ok" for j in jobs), 40)
    assert orq.saude().ok and not orq._tasks[0].done()
    assert json.loads((orq.home / "saude.json").read_text())["ok"] is True
    assert "cannot be written" not in CliRunner().invoke(app, ["stats"]).output


async def test_malformed_lifecycle_events_are_dropped_and_later_ones_recorded():
    async with collecting("res_ev") as (orq, _broker):
        job = await orq.iniciar("iniciar_coleta", "x", {})
        base = {"evento": "iniciado", "correlation_id": job.correlation_id, "message_id": job.message_id,
                "alvo": "x", "worker": "w", "tentativa": 1}  # fmt: skip
        hostile = [
            b"[" * 100_000,
            json.dumps([{**base, "alvo": {"um": "objeto"}}]).encode(),
            json.dumps({**base, "tentativa": 10**30}).encode(),
            json.dumps({**base, "at": "agora"}).encode(),
        ]
        for body in hostile:
            orq._on_event(body)
        orq._on_event(json.dumps(base).encode())
        await eventually(lambda: orq.store.job(job.message_id or "").estado == "running")
        await asyncio.sleep(0.3)
        assert not orq._tasks[1].done(), "the event writer is alive"
        eventos = [r["evento"] for r in orq.store.trace(job.correlation_id) if r["tipo"] == "evento"]
        assert eventos == ["iniciado"]


def test_the_store_backoff_stays_at_its_cap_however_long_the_store_is_down():
    """2.0 ** 1024 overflows: without a bounded exponent, the 1,025th failed write in a row
    (about eight hours of a full disk at 30 s apiece) raised OverflowError out of the collecting loop."""
    from orquestrador.collector import BACKOFF_MAX, Backoff

    backoff = Backoff()
    delays = [backoff.next() for _ in range(2000)]
    assert delays[:3] == [0.5, 1.0, 2.0]
    assert delays[-1] == BACKOFF_MAX


async def test_close_returns_when_the_broker_no_longer_answers(monkeypatch: Any, caplog: Any) -> None:
    """After an outage a driver can be left half-closed: the notebook's close() gives each
    broker step a bound, says which it gave up, and still closes the store."""
    import orquestrador.orchestrator as orchestrator

    monkeypatch.setattr(orchestrator, "CLOSE_WAIT", 0.2)
    orq = AsyncOrquestrador(f"memory://{uuid.uuid4().hex}", responder_para=f"res_{uuid.uuid4().hex[:8]}")
    await orq.start()
    assert orq.broker is not None
    real_close = orq.broker.close

    async def hangs() -> None:
        await asyncio.Event().wait()

    monkeypatch.setattr(orq.broker, "close", hangs)
    await asyncio.wait_for(orq.close(), 5)
    assert "closing the broker connection took over" in caplog.text
    with contextlib.suppress(Exception):
        await real_close()
