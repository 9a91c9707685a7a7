"""A job published by hand with plain nats-py, as in the interface note, is a valid job."""

from __future__ import annotations

import json
import uuid

import nats
import pytest

from orquestrador.brokers import connect
from orquestrador.envelope import content_id
from orquestrador.plugins import Plugin
from tests.roundtrip import answer_of

pytestmark = pytest.mark.nats


def dobro(payload: dict) -> dict:
    return {"dobro": payload["param"] * 2}


async def test_four_field_envelope_from_plain_nats_py_is_processed_and_answered(nats_url: str):
    nome = f"interop_{uuid.uuid4().hex[:8]}"
    queue = f"escavador_{nome}"
    broker = await connect(nats_url)
    await broker.declare(queue)  # the stream must exist for a JetStream publish by hand
    correlation_id = str(uuid.uuid4())
    body = json.dumps(
        {
            "correlation_id": correlation_id,
            "tipo_evento": "iniciar_coleta",
            "payload": {"param": 21},
            "timestamp": "2025-10-14T12:00:00Z",
        }
    ).encode()

    nc = await nats.connect(nats_url)
    await nc.jetstream().publish(queue, body)
    await nc.close()

    try:
        answer = await answer_of(broker, Plugin("escavador", nome, dobro, "tests"), correlation_id)
    finally:
        await broker.delete(queue)
        await broker.close()

    assert answer is not None, "no resultado_coleta arrived"
    assert answer["tipo_evento"] == "resultado_coleta"
    assert answer["status"] == "ok"
    assert answer["payload"] == {"dobro": 42}
    assert answer["causation_id"] == content_id(body), "a stable id is derived for hand-made jobs"
