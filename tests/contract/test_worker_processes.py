"""Real worker processes on every real broker: scale-out, SIGKILL takeover, leases, drain.

Adapters whose queues stay inside one process (``memory://``) are left out.
"""

from __future__ import annotations

import asyncio
import signal
import uuid

import pytest

from orquestrador import Orquestrador
from orquestrador.brokers import connect
from tests.conftest import broker_url_for, brokers_where
from tests.workers import start_worker, wait_for

REAL_BROKERS = brokers_where(lambda caps: caps.cross_process)


@pytest.fixture(params=REAL_BROKERS)
def url(request: pytest.FixtureRequest) -> str:
    return broker_url_for(request.param, request)


@pytest.fixture
def suffix() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
def orq(url: str, suffix: str):  # type: ignore[no-untyped-def]
    with Orquestrador(url, responder_para=f"res_{suffix}") as o:
        yield o
    queues = [f"escavador_eco_{suffix}", f"escavador_lento_{suffix}", f"res_{suffix}"]
    asyncio.run(_delete(url, queues))


async def _delete(url: str, queues: list[str]) -> None:
    """Shared servers stay as found: drop the queues this test created."""
    broker = await connect(url)
    for queue in queues:
        await broker.delete(queue)
    await broker.close()


def test_200_jobs_over_two_worker_processes_come_back_exactly_once(orq, url, suffix):
    workers = [start_worker(url, "eco", suffix, concurrency=8) for _ in range(2)]
    try:
        lote = orq.iniciar_coletas(f"eco_{suffix}", [{"i": i} for i in range(200)], progress=False)
        lote.wait(60)
    finally:
        codes = [w.stop() for w in workers]

    frame = orq.resultados(alvo=f"eco_{suffix}")
    assert len(frame) == 200
    assert frame["message_id"].is_unique
    assert set(frame["status"]) == {"ok"}
    assert sorted(frame["resultado.eco.i"]) == list(range(200))
    assert (frame["tentativa"] == 1).all()
    assert frame["duracao"].dt.total_seconds().gt(0).all()
    assert codes == [0, 0], "workers drain and exit cleanly on SIGTERM"


def test_jobs_of_a_sigkilled_worker_are_finished_by_another(orq, url, suffix):
    first = start_worker(url, "lento", suffix, concurrency=4, visibility_timeout=2)
    lote = orq.iniciar_coletas(f"lento_{suffix}", [{"segundos": 3}] * 4, progress=False)
    wait_for(lambda: lote.contagem().get("running") == 4, timeout=20)

    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait()
    second = start_worker(url, "lento", suffix, concurrency=4, visibility_timeout=2)
    try:
        lote.wait(40)
    finally:
        second.stop()

    frame = lote.resultados()
    assert list(frame["status"]) == ["ok"] * 4
    assert set(frame["resultado.pid"]) == {second.pid}, "finished by the surviving worker"
    assert (frame["tentativa"] >= 2).all(), "the attempt count comes from JetStream"


def test_long_job_blocked_in_c_keeps_its_lease(orq, url, suffix):
    # 5 s of time.sleep with a 1 s visibility timeout: only runtime heartbeats prevent a redelivery.
    worker = start_worker(url, "lento", suffix, concurrency=2, visibility_timeout=1)
    try:
        job = orq.iniciar_coleta(f"lento_{suffix}", {"segundos": 5}).wait(30)
    finally:
        worker.stop()
    assert job.status == "ok"
    assert job.tentativa == 1


def test_sigterm_drains_the_job_in_flight_before_exiting(orq, url, suffix):
    worker = start_worker(url, "lento", suffix, concurrency=1)
    job = orq.iniciar_coleta(f"lento_{suffix}", {"segundos": 2})
    wait_for(lambda: job.status == "running", timeout=20)

    code = worker.stop()

    assert code == 0
    assert job.wait(10).status == "ok"
    assert "draining" in worker.output()


def test_status_distinguishes_unknown_queued_and_done(orq, url, suffix):
    job = orq.iniciar_coleta(f"eco_{suffix}", {"x": 1})
    assert job.status == "queued"
    assert orq.job(str(uuid.uuid4())) is None

    worker = start_worker(url, "eco", suffix)
    try:
        job.wait(30)
    finally:
        worker.stop()
    assert job.status == "ok"
    assert job.result == {"eco": {"x": 1}, "pid": worker.pid, "tentativa": 1}


def test_trace_shows_the_chain_in_time_order(orq, url, suffix):
    worker = start_worker(url, "eco", suffix)
    try:
        job = orq.iniciar_coleta(f"eco_{suffix}", {"x": 1}).wait(30)
        wait_for(lambda: _complete(orq.rastrear(job.correlation_id)), timeout=10)
        trace = orq.rastrear(job.correlation_id)
    finally:
        worker.stop()
    envelopes = trace[trace["tipo"] == "envelope"]
    assert list(envelopes["evento"]) == ["iniciar_coleta", "resultado_coleta"]
    assert envelopes.iloc[1]["causation_id"] == job.message_id
    assert trace["momento"].is_monotonic_increasing
    assert "iniciado" in set(trace["evento"])


def _complete(trace) -> bool:  # type: ignore[no-untyped-def]
    return {"iniciado", "resultado_coleta"} <= set(trace["evento"])
