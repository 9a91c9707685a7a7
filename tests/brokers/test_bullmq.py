"""What the contract suite cannot see: our messages are BullMQ jobs as BullMQ's own client reads them.

Runs on the session's Redis (``bullmq_url``); the Python ``bullmq`` package stands in for any
other BullMQ client here (tests/test_interop_bullmq.py does the same with Node's).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import pytest
from bullmq import Queue

from orquestrador.brokers import Broker, connect, create_broker
from orquestrador.brokers.base import DLQ_ATTEMPTS, DLQ_REASON, dlq_of
from orquestrador.errors import ConfigError

pytestmark = pytest.mark.bullmq


@pytest.fixture
async def broker(bullmq_url: str) -> AsyncIterator[Broker]:
    b = await connect(bullmq_url)
    yield b
    await b.close()


@pytest.fixture
async def queue(broker: Broker) -> AsyncIterator[str]:
    name = f"escavador_t{uuid.uuid4().hex[:10]}"
    yield name
    await broker.delete(name)


@pytest.fixture
async def bull(bullmq_url: str, queue: str) -> AsyncIterator[Queue]:
    """BullMQ's own Queue on the same keys."""
    q = Queue(queue, {"connection": bullmq_url.replace("bullmq://", "redis://", 1)})
    yield q
    await q.close()


async def test_a_published_envelope_is_a_bullmq_job_named_by_its_id_with_the_envelope_as_data(
    broker: Broker, queue: str, bull: Queue
):
    message_id = str(uuid.uuid4())
    envelope = {"correlation_id": "c1", "tipo_evento": "iniciar_coleta", "payload": {"ação": "ç"},
                "timestamp": "2025-10-14T12:00:00Z", "message_id": message_id}  # fmt: skip
    body = json.dumps(envelope, ensure_ascii=False, indent=1).encode()  # spaces and UTF-8 kept

    await broker.publish(queue, body, message_id=message_id, headers={"traceparent": "00-a-b-01"})
    await broker.publish(queue, body, message_id=message_id)  # the same id again: BullMQ keeps one

    job = await bull.getJob(message_id)
    assert job is not None and job.name == "iniciar_coleta"
    assert job.data == envelope
    # every job of ours is prioritized, prioridade 0 at BullMQ's 10 (see README: priority)
    assert await bull.getJobCounts("waiting", "prioritized") == {"waiting": 0, "prioritized": 1}
    assert job.opts["priority"] == 10
    [peeked] = await broker.peek(queue)
    assert (peeked.body, peeked.id, peeked.headers) == (body, message_id, {"traceparent": "00-a-b-01"})


@pytest.mark.parametrize(
    "body", [b"\xff\xfe not UTF-8", b"plain text", b'{"orq_bytes": "looks like ours"}', b"NaN", b""]
)
async def test_bodies_that_are_not_json_jobs_come_back_byte_for_byte(broker: Broker, queue: str, body: bytes):
    await broker.publish(queue, body)
    consumer = await broker.consume(queue, visibility_timeout=5)
    [delivery] = await consumer.fetch(1, timeout=5)
    assert delivery.body == body and delivery.problem is None
    await delivery.ack()
    await consumer.close()


async def test_ack_completes_the_job_with_the_reply_as_its_returnvalue(
    broker: Broker, queue: str, bull: Queue
):
    await broker.publish(queue, b'{"tipo_evento": "iniciar_coleta"}', message_id="m-1")
    consumer = await broker.consume(queue, visibility_timeout=5)
    [delivery] = await consumer.fetch(1, timeout=5)
    assert delivery.attempt == 1
    delivery.reply = b'{"tipo_evento": "resultado_coleta", "status": "ok"}'
    await delivery.ack()
    await consumer.close()

    job = await bull.getJob("m-1")
    assert await job.getState() == "completed"
    assert job.returnvalue == {"tipo_evento": "resultado_coleta", "status": "ok"}


async def test_a_job_bullmq_itself_failed_is_a_dead_letter_with_its_reason(
    broker: Broker, queue: str, bull: Queue
):
    """A job failed by another BullMQ worker (a Node service's, say) shows in `orq dlq list`."""
    await broker.publish(queue, b'{"tipo_evento": "iniciar_coleta"}', message_id="m-2")
    token = "someone-else"
    await bull.backend.moveToActive(token, {"lockDuration": 5000})
    job = await bull.getJob("m-2")
    await job.moveToFailed(Exception("their worker broke"), token)

    [dead] = await broker.peek(dlq_of(queue))
    assert (dead.id, dead.headers[DLQ_REASON]) == ("m-2", "their worker broke")
    assert dead.headers[DLQ_ATTEMPTS] == "1"
    assert (await broker.stats(queue)).dead_letters == 1
    assert await broker.replay(queue) == 1
    assert await bull.getJobCounts("prioritized", "failed") == {"prioritized": 1, "failed": 0}


def test_the_url_names_the_prefix_and_refuses_a_bad_one():
    assert create_broker("bullmq://127.0.0.1:6379/0?prefix=equipe").prefix == "equipe"  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="invalid prefix"):
        create_broker("bullmq://127.0.0.1:6379/0?prefix=a:b")
