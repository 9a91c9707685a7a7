"""The worker runtime's promises, on every broker: retries, dead letters, hostile input."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import BaseModel, Field

from orquestrador import AsyncOrquestrador, Contexto, PermanentFailure, Worker, WorkerOptions
from orquestrador.brokers import Broker
from orquestrador.brokers.base import DLQ_ATTEMPTS, DLQ_REASON, dlq_of
from orquestrador.errors import PayloadTooLarge
from orquestrador.plugins import Plugin, _takes_context
from tests.conftest import eventually


def talvez(payload: dict[str, Any], ctx: Contexto) -> dict[str, Any]:
    if payload.get("falhar") == "sempre":
        raise ValueError(f"always fails ({payload['n']})")
    if payload.get("falhar") == "duas_vezes" and ctx.tentativa < 3:
        raise ConnectionError(f"flaky on attempt {ctx.tentativa}")
    if payload.get("falhar") == "permanente":
        raise PermanentFailure("this input can never work")
    return {"n": payload.get("n"), "tentativa": ctx.tentativa}


@pytest.fixture
async def setup(broker: Broker, broker_url: str) -> AsyncIterator[tuple[AsyncOrquestrador, str, Broker]]:
    nome = f"talvez_{uuid.uuid4().hex[:10]}"
    plugin = Plugin("escavador", nome, talvez, "tests", takes_context=_takes_context(talvez))
    options = WorkerOptions(max_tentativas=3, backoff_base=0.1, backoff_max=0.5, visibility_timeout=5)
    worker = Worker(broker, [plugin], options)
    orq = AsyncOrquestrador(broker_url, responder_para=f"res_{uuid.uuid4().hex[:10]}")
    await orq.start()
    task = asyncio.create_task(worker.run())
    yield orq, nome, broker
    worker.stop()
    await asyncio.wait_for(task, 30)
    await orq.close()
    for queue in (plugin.fila, orq.responder_para):
        await broker.delete(queue)


async def test_retry_until_success_then_dead_letter_while_serving_others(setup):
    orq, nome, broker = setup
    flaky = await orq.iniciar("iniciar_coleta", nome, {"falhar": "duas_vezes", "n": 1})
    doomed = await orq.iniciar("iniciar_coleta", nome, {"falhar": "sempre", "n": 2})
    good = [await orq.iniciar("iniciar_coleta", nome, {"n": 10 + i}) for i in range(5)]

    rows = [await orq.esperar(e.message_id, 30) for e in [flaky, doomed, *good]]

    assert rows[0].estado == "ok" and rows[0].tentativa == 3
    assert rows[0].resultado == {"n": 1, "tentativa": 3}
    assert rows[1].estado == "dead-lettered"
    assert rows[1].erro["tipo"] == "ValueError"
    assert rows[1].erro["mensagem"] == "always fails (2)"
    assert [r.estado for r in rows[2:]] == ["ok"] * 5
    # The error result is published before the dead letter (so it is never lost): wait for both.
    [dead] = await eventually(lambda: broker.peek(dlq_of(f"escavador_{nome}")), timeout=10)
    assert json.loads(dead.body)["message_id"] == doomed.message_id
    assert dead.headers[DLQ_REASON] == "ValueError: always fails (2)"
    assert dead.headers[DLQ_ATTEMPTS] == "3"


async def test_permanent_failure_skips_retries(setup):
    orq, nome, _ = setup
    env = await orq.iniciar("iniciar_coleta", nome, {"falhar": "permanente"})
    row = await orq.esperar(env.message_id, 30)
    assert row.estado == "dead-lettered"
    assert row.tentativa == 1
    assert row.erro["tipo"] == "PermanentFailure"


async def test_malformed_input_is_dead_lettered_with_its_reason_and_work_goes_on(setup):
    orq, nome, broker = setup
    queue = f"escavador_{nome}"
    envelope = {"correlation_id": "c1", "payload": {}, "timestamp": "2025-10-14T12:00:00Z"}
    bad = {
        b"\xff\xfe not json at all": "not valid JSON",
        b'["a", "list"]': "not an envelope",
        json.dumps({**envelope, "tipo_evento": "iniciar_tudo"}).encode(): "tipo_evento",
        json.dumps({**envelope, "tipo_evento": "resultado_coleta"}).encode(): "cannot be handled",
        json.dumps({**envelope, "tipo_evento": "iniciar_coleta", "payload": 3}).encode(): "payload",
    }
    for body in bad:
        await broker.publish(queue, body)
    good = await orq.iniciar("iniciar_coleta", nome, {"n": 1})

    assert (await orq.esperar(good.message_id, 30)).estado == "ok"
    dead = await eventually(lambda: _all_dead(broker, queue, len(bad)), timeout=20)
    by_body = {m.body: m.headers[DLQ_REASON] for m in dead}
    for body, reason in bad.items():
        assert reason in by_body[body], (body, by_body[body])


async def _all_dead(broker: Broker, queue: str, n: int):  # type: ignore[no-untyped-def]
    dead = await broker.peek(dlq_of(queue), limit=50)
    return dead if len(dead) >= n else None


async def test_oversized_payload_is_refused_before_it_reaches_the_broker(setup):
    orq, nome, broker = setup
    with pytest.raises(PayloadTooLarge, match=r"10\.0 MiB, over the 1\.0 MiB limit"):
        await orq.iniciar("iniciar_coleta", nome, {"blob": "x" * 10 * 1024 * 1024})
    assert (await broker.stats(f"escavador_{nome}")).depth == 0
    assert orq.store.count_by_state() == {}


async def paginas(payload: dict[str, Any], ctx: Contexto):  # type: ignore[no-untyped-def]
    for page in range(1, payload["paginas"] + 1):
        if page == 3 and ctx.tentativa == 1 and payload.get("falhar_na_3"):
            raise ConnectionError("lost the connection on page 3")
        yield {"pagina": page}


def linhas(payload: dict[str, Any]):  # type: ignore[no-untyped-def]
    yield from ({"linha": text} for text in payload["texto"].splitlines())


@pytest.mark.parametrize("handler", [paginas, linhas], ids=["async-generator", "generator"])
async def test_partial_results_are_recorded_once_each_in_order(broker: Broker, broker_url: str, handler):
    nome = f"partes_{uuid.uuid4().hex[:8]}"
    plugin = Plugin("escavador", nome, handler, "tests", takes_context=_takes_context(handler))
    worker = Worker(broker, [plugin], WorkerOptions(backoff_base=0.05, backoff_max=0.1))
    task = asyncio.create_task(worker.run())
    orq = AsyncOrquestrador(broker_url, responder_para=f"res_{nome}")
    await orq.start()
    try:
        payload = {"paginas": 4, "falhar_na_3": True, "texto": "a\nb\nc\nd"}
        env = await orq.iniciar("iniciar_coleta", nome, payload)
        row = await orq.esperar(env.message_id, 30)
        parts = orq.store.parts(env.message_id)
    finally:
        worker.stop()
        await task
        await orq.close()
        for queue in (plugin.fila, orq.responder_para):
            await broker.delete(queue)

    assert row is not None and row.estado == "ok"
    assert row.resultado == {"partes": 4}
    expected = [{"pagina": i} for i in range(1, 5)] if handler is paginas else [{"linha": c} for c in "abcd"]
    assert parts == expected, "a retried generator re-sends its first parts; each is kept once"


class Pedido(BaseModel):
    url: str
    paginas: int = Field(ge=1)


def com_esquema(payload: Pedido, ctx: Contexto) -> dict[str, Any]:
    ctx.progress(0.5, "half way")
    return {"url": payload.url, "paginas": payload.paginas}


async def test_payload_schema_is_validated_and_progress_is_recorded(broker: Broker, broker_url: str):
    nome = f"esquema_{uuid.uuid4().hex[:8]}"
    plugin = Plugin("escavador", nome, com_esquema, "tests", schema=Pedido, takes_context=True)
    worker = Worker(broker, [plugin], WorkerOptions(max_tentativas=5))
    task = asyncio.create_task(worker.run())
    orq = AsyncOrquestrador(broker_url, responder_para=f"res_{nome}")
    await orq.start()
    try:
        good = await orq.iniciar("iniciar_coleta", nome, {"url": "http://x.test/", "paginas": 2})
        bad = await orq.iniciar("iniciar_coleta", nome, {"url": "http://x.test/", "paginas": 0})
        good_row, bad_row = await orq.esperar(good.message_id, 20), await orq.esperar(bad.message_id, 20)
        trace = await eventually(lambda: _with_progress(orq, good.correlation_id), timeout=10)
        [dead] = await broker.peek(dlq_of(plugin.fila))
    finally:
        worker.stop()
        await task
        await orq.close()
        for queue in (plugin.fila, orq.responder_para):
            await broker.delete(queue)

    assert good_row.resultado == {"url": "http://x.test/", "paginas": 2}
    assert bad_row.estado == "dead-lettered" and bad_row.tentativa == 1, "no retries for a bad payload"
    assert "paginas" in bad_row.erro["mensagem"]
    assert "greater than or equal to 1" in dead.headers[DLQ_REASON]
    [progress] = [r for r in trace if r["evento"] == "progresso"]
    assert progress["detalhe"] == {"fracao": 0.5, "nota": "half way"}


def _with_progress(orq: AsyncOrquestrador, correlation_id: str):  # type: ignore[no-untyped-def]
    trace = orq.store.trace(correlation_id)
    return trace if any(r["evento"] == "progresso" for r in trace) else None
