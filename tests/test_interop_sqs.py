"""A job sent by hand with plain boto3, the interface note's four-field envelope as the message
body to ``escavador_<nome>``, is a valid job, as plain pika's is on RabbitMQ."""

from __future__ import annotations

import asyncio
import json
import uuid
from urllib.parse import parse_qsl, urlsplit

import boto3
import pytest

from orquestrador import Worker, WorkerOptions
from orquestrador.brokers import connect
from orquestrador.envelope import content_id
from orquestrador.plugins import Plugin
from tests.conftest import broker_url_for

pytestmark = pytest.mark.sqs


def dobro(payload: dict) -> dict:
    return {"dobro": payload["param"] * 2}


@pytest.mark.parametrize("queue_first", [False, True], ids=["worker-declares", "producer-creates"])
async def test_four_field_envelope_from_plain_boto3_is_processed_and_answered(
    request: pytest.FixtureRequest, queue_first: bool
):
    url = broker_url_for("sqs", request)
    parts = urlsplit(url)
    sqs = boto3.client(
        "sqs",
        region_name=parts.hostname or None,
        endpoint_url=dict(parse_qsl(parts.query)).get("endpoint_url"),
    )
    nome = f"interop_{uuid.uuid4().hex[:8]}"
    queue, results = f"escavador_{nome}", f"res_{nome}"
    broker = await connect(url)
    if queue_first:  # the producer creates the queue itself, with SQS's defaults, as in the note
        sqs.create_queue(QueueName=queue)
    else:
        await broker.declare(queue)
    correlation_id = str(uuid.uuid4())
    body = json.dumps(
        {
            "correlation_id": correlation_id,
            "tipo_evento": "iniciar_coleta",
            "payload": {"param": 21},
            "timestamp": "2025-10-14T12:00:00Z",
        }
    )
    sqs.send_message(QueueUrl=sqs.get_queue_url(QueueName=queue)["QueueUrl"], MessageBody=body)

    plugin = Plugin("escavador", nome, dobro, "tests")
    worker = Worker(broker, [plugin], WorkerOptions(results_queue=results))  # no responder_para: here
    task = asyncio.create_task(worker.run())
    consumer = await broker.consume(results, visibility_timeout=5)
    answer = None
    try:
        for _ in range(60):
            for delivery in await consumer.fetch(10, timeout=0.5):
                data = json.loads(delivery.body)
                if data["correlation_id"] == correlation_id:
                    answer = data
                    await delivery.ack()
                else:
                    await delivery.nack()
            if answer:
                break
    finally:
        worker.stop()
        await task
        await consumer.close()
        await broker.delete(queue)
        await broker.delete(results)
        await broker.close()

    assert answer is not None, "no resultado_coleta arrived"
    assert answer["tipo_evento"] == "resultado_coleta"
    assert answer["status"] == "ok"
    assert answer["payload"] == {"dobro": 42}
    assert answer["causation_id"] == content_id(body.encode()), "a stable id is derived for hand-made jobs"
