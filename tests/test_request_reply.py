"""Request-reply: ``solicitar`` returns the result, or says clearly that it timed out or failed.

On every broker: with no worker it times out cleanly (the job stays recorded and finishes once
a worker comes), and with one it returns the result.
"""

from __future__ import annotations

import uuid

import pytest

from orquestrador import AsyncOrquestrador, Orquestrador
from orquestrador.errors import JobFailed, JobTimeout, PermanentFailure
from orquestrador.plugins import Plugin
from tests.background import BackgroundWorker


def dobro(payload: dict) -> dict:
    if payload.get("falhar"):
        raise PermanentFailure("asked to fail")
    return {"dobro": payload["n"] * 2}


def _plugin(kind: str = "escavador") -> Plugin:
    return Plugin(kind, f"dobro_{uuid.uuid4().hex[:8]}", dobro, "tests")  # type: ignore[arg-type]


def test_times_out_with_no_worker_and_returns_with_one(broker_url: str) -> None:
    plugin = _plugin()
    with Orquestrador(broker_url, responder_para=f"rr_{uuid.uuid4().hex[:8]}") as orq:
        with pytest.raises(JobTimeout) as timed_out:
            orq.solicitar(plugin.nome, {"n": 1}, timeout=0.5)
        message = str(timed_out.value)
        assert plugin.nome in message and "may still finish" in message
        left = orq.job(timed_out.value.message_id or "")
        assert left is not None and left.status == "queued"  # recorded, not lost
        with BackgroundWorker(broker_url, [plugin]):
            assert orq.solicitar(plugin.nome, {"n": 21}, timeout=30) == {"dobro": 42}
            assert left.wait(30).result == {"dobro": 2}  # the timed-out job finished too


def test_a_failed_job_raises_with_the_workers_error() -> None:
    url = f"memory://{uuid.uuid4().hex}"
    plugin = _plugin("executor")
    with Orquestrador(url) as orq, BackgroundWorker(url, [plugin]):
        with pytest.raises(JobFailed, match="asked to fail") as failed:
            orq.solicitar(plugin.nome, {"falhar": True}, execucao=True, timeout=10)
        assert failed.value.estado in ("erro", "dead-lettered")
        assert failed.value.erro is not None and failed.value.erro["mensagem"] == "asked to fail"
        assert orq.job(failed.value.message_id).status == failed.value.estado  # type: ignore[union-attr]
        assert orq.solicitar(plugin.nome, {"n": 4}, execucao=True, timeout=10) == {"dobro": 8}


async def test_the_async_twin() -> None:
    url = f"memory://{uuid.uuid4().hex}"
    plugin = _plugin()
    core = AsyncOrquestrador(url)
    await core.start()
    try:
        with pytest.raises(JobTimeout):
            await core.solicitar(plugin.nome, {"n": 1}, timeout=0.2)
        with pytest.raises(ValueError, match="timeout"):
            await core.solicitar(plugin.nome, {"n": 1}, timeout=0)
    finally:
        await core.close()
