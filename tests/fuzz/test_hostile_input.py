"""Hostile input never crashes decoding or a worker, and never costs a good message its place."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orquestrador import AsyncOrquestrador, Worker, WorkerOptions
from orquestrador.brokers import connect
from orquestrador.brokers.base import DLQ_REASON, dlq_of
from orquestrador.envelope import decode, encode
from orquestrador.errors import EnvelopeError
from orquestrador.plugins import Plugin

GOOD = {
    "correlation_id": "c",
    "tipo_evento": "iniciar_coleta",
    "payload": {"k": 1},
    "timestamp": "2025-10-14T12:00:00Z",
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=30,
)


def mutated_envelopes() -> st.SearchStrategy[bytes]:
    """Envelopes with one field replaced, removed or given a wrong type, plus raw junk."""
    field = st.sampled_from(sorted(GOOD))
    replaced = st.builds(lambda f, v: {**GOOD, f: v}, field, json_values)
    removed = st.builds(lambda f: {k: v for k, v in GOOD.items() if k != f}, field)
    as_json = st.one_of(replaced, removed, json_values).map(lambda v: json.dumps(v).encode())
    truncated = st.integers(0, len(json.dumps(GOOD))).map(lambda n: json.dumps(GOOD).encode()[:n])
    return st.one_of(as_json, truncated, st.binary(max_size=300))


@settings(max_examples=700, deadline=None)
@given(mutated_envelopes())
def test_decode_returns_an_envelope_or_a_reason_never_anything_else(body: bytes):
    try:
        env = decode(body)
    except EnvelopeError as exc:
        assert exc.reason and "\n" not in exc.reason
        return
    assert json.loads(encode(env))["correlation_id"] == env.correlation_id


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=2000), st.integers(1, 60))
def test_deeply_nested_and_odd_payloads_round_trip(text: str, depth: int):
    payload: Any = text
    for _ in range(depth):
        payload = {"n": payload}
    env = decode(json.dumps({**GOOD, "payload": payload}).encode())
    assert decode(encode(env)).payload == payload


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(mutated_envelopes(), min_size=10, max_size=40))
def test_worker_dead_letters_every_bad_message_and_answers_every_good_one(bodies: list[bytes]):
    asyncio.run(_run_batch(bodies))


async def _run_batch(bodies: list[bytes]) -> None:
    url = f"memory://{uuid.uuid4().hex}"
    nome = f"fuzz_{uuid.uuid4().hex[:6]}"
    broker = await connect(url)
    worker = Worker(broker, [Plugin("escavador", nome, lambda p: {"ok": True}, "tests")], WorkerOptions())
    task = asyncio.create_task(worker.run())
    orq = AsyncOrquestrador(url, responder_para=f"res_{nome}")
    await orq.start()
    queue = f"escavador_{nome}"
    good_ids = []
    for i, body in enumerate(bodies):
        await broker.publish(queue, body)
        if i % 3 == 0:  # good messages between the bad ones
            good_ids.append((await orq.iniciar("iniciar_coleta", nome, {"i": i})).message_id)
    bad = sum(1 for b in bodies if not _valid_for_queue(b))
    try:
        rows = [await orq.esperar(m, 20) for m in good_ids]
        for _ in range(200):
            stats = await broker.stats(queue)
            if stats.depth == 0 and stats.in_flight == 0:
                break
            await asyncio.sleep(0.05)
        dead = await broker.peek(dlq_of(queue), limit=1000)
    finally:
        worker.stop()
        await task
        await orq.close()
    assert all(r is not None and r.estado == "ok" for r in rows), "no good message is lost next to bad ones"
    assert len(dead) == bad
    assert all(m.headers[DLQ_REASON] for m in dead)


def _valid_for_queue(body: bytes) -> bool:
    try:
        return decode(body).tipo_evento == "iniciar_coleta"
    except EnvelopeError:
        return False
