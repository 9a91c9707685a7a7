"""What the Kafka adapter does beyond the contract suite: a plain aiokafka producer makes a job,
commits never skip an unfinished job, the group's commits tell every worker's in-flight jobs,
events are keyed by correlation_id, credentials never show, and ``orq demo`` runs on Kafka."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from orquestrador import Worker, WorkerOptions
from orquestrador.brokers import connect, create_broker
from orquestrador.brokers.kafka import EVENTS_TOPIC
from orquestrador.envelope import content_id
from orquestrador.errors import BrokerUnavailable
from orquestrador.plugins import Plugin
from tests.certs import TlsFiles
from tests.conftest import eventually
from tests.roundtrip import answer_of
from tests.servers import KafkaServer
from tests.test_cli import orq

pytestmark = pytest.mark.kafka


def bootstrap(url: str) -> str:
    return url.removeprefix("kafka://")


def dobro(payload: dict) -> dict:  # type: ignore[type-arg]
    return {"dobro": payload["param"] * 2}


async def test_four_field_envelope_from_plain_aiokafka_is_processed_and_answered(kafka_url: str):
    nome = f"interop_{uuid.uuid4().hex[:8]}"
    queue = f"escavador_{nome}"
    correlation_id = str(uuid.uuid4())
    envelope = {
        "correlation_id": correlation_id,
        "tipo_evento": "iniciar_coleta",
        "payload": {"param": 21},
        "timestamp": "2025-10-14T12:00:00Z",
    }
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap(kafka_url),
        value_serializer=lambda v: json.dumps(v).encode("utf-8"),
        key_serializer=lambda k: k.encode("utf-8"),
    )
    await producer.start()
    try:  # the topic does not exist yet: Kafka creates it on the first record
        await producer.send_and_wait(queue, envelope, key=correlation_id)
    finally:
        await producer.stop()
    body = json.dumps(envelope).encode("utf-8")

    broker = await connect(kafka_url)
    try:
        answer = await answer_of(broker, Plugin("escavador", nome, dobro, "tests"), correlation_id)
    finally:
        await broker.delete(queue)
        await broker.close()

    assert answer is not None, "no resultado_coleta arrived"
    assert (answer["tipo_evento"], answer["status"]) == ("resultado_coleta", "ok")
    assert answer["payload"] == {"dobro": 42}
    assert answer["causation_id"] == content_id(body), "a stable id is derived for hand-made jobs"


async def test_a_crashed_consumer_skips_no_unfinished_job_and_reruns_no_finished_one(kafka_url: str):
    broker = await connect(create_broker(f"{kafka_url}?partitions=1").url)
    queue = f"t_{uuid.uuid4().hex[:12]}"
    try:
        for i in range(4):
            await broker.publish(queue, f"job{i}".encode())
        first = await broker.consume(queue, visibility_timeout=60)
        taken = []
        while len(taken) < 4:
            taken += await first.fetch(4 - len(taken), timeout=5)
        assert [d.body for d in taken] == [b"job0", b"job1", b"job2", b"job3"]
        await taken[1].ack()
        await taken[3].ack()  # job0 and job2 are still running when the worker dies
        await first.close()

        second = await broker.consume(queue, visibility_timeout=60)
        again = []
        for _ in range(20):
            again += await second.fetch(10, timeout=0.5)
            if len(again) >= 2:
                break
        assert sorted(d.body for d in again) == [b"job0", b"job2"], "finished jobs are not run again"
        assert {d.attempt for d in again} == {2}, "the crash counted the attempt"
        for delivery in again:
            await delivery.ack()
        assert await second.fetch(10, timeout=1.0) == []
        stats = await broker.stats(queue)
        assert (stats.depth, stats.in_flight) == (0, 0)
        await second.close()
    finally:
        await broker.delete(queue)
        await broker.close()


async def test_in_flight_counts_the_jobs_another_process_holds(kafka_url: str, queue_name: str):
    worker_side, observer = await connect(kafka_url), await connect(kafka_url)
    try:
        for i in range(3):
            await worker_side.publish(queue_name, f"job{i}".encode())
        consumer = await worker_side.consume(queue_name, visibility_timeout=60, prefetch=2)
        held = []
        while len(held) < 2:
            held += await consumer.fetch(2 - len(held), timeout=5)

        stats = await observer.stats(queue_name)  # a worker's prefetch counts as in flight
        assert (stats.depth, stats.in_flight, stats.consumers) == (1, 2, 1)

        for delivery in held:
            await delivery.ack()
        await consumer.close()
    finally:
        await worker_side.delete(queue_name)
        await worker_side.close()
        await observer.close()


async def test_a_worker_waiting_for_jobs_holds_none_of_them(kafka_url: str, queue_name: str):
    """While it waits, a consumer commits a mark a prefetch ahead (so a lone job reaches its
    handler without a commit first); jobs that arrive meanwhile still count as waiting, not as
    in flight, until it takes them."""
    worker_side, observer = await connect(kafka_url), await connect(kafka_url)
    try:
        await worker_side.publish(queue_name, b"first")
        consumer = await worker_side.consume(queue_name, visibility_timeout=60, prefetch=4)
        [first] = await eventually(lambda: consumer.fetch(1, timeout=1), timeout=20)
        await first.ack()
        assert await consumer.fetch(4, timeout=0.5) == []  # waits: the mark runs ahead now

        for i in range(3):
            await worker_side.publish(queue_name, f"job{i}".encode())
        stats = await observer.stats(queue_name)
        assert (stats.depth, stats.in_flight) == (3, 0)

        taken = []
        while len(taken) < 3:
            taken += await consumer.fetch(3 - len(taken), timeout=5)
        assert [d.attempt for d in taken] == [1, 1, 1]

        async def held() -> tuple[int, int]:
            s = await observer.stats(queue_name)
            return s.depth, s.in_flight

        async def all_three_held() -> bool:  # the hand-outs are committed just after, not before
            return await held() == (0, 3)

        await eventually(all_three_held, timeout=10)
        for delivery in taken:
            await delivery.ack()
        await consumer.close()
        assert await held() == (0, 0)
    finally:
        await worker_side.delete(queue_name)
        await worker_side.close()
        await observer.close()


async def test_a_job_handed_out_on_a_reservation_counts_its_attempt_after_a_crash(kafka_url: str):
    """The mark committed ahead covers a job handed out with no commit of its own: when its
    worker dies (leaves the group without a word), the next one counts the attempt."""
    broker = await connect(create_broker(f"{kafka_url}?partitions=1").url)
    queue = f"t_{uuid.uuid4().hex[:12]}"
    try:
        await broker.publish(queue, b"warm-up")
        first = await broker.consume(queue, visibility_timeout=60, prefetch=4)
        [warm] = await eventually(lambda: first.fetch(1, timeout=1), timeout=20)
        await warm.ack()
        assert await first.fetch(4, timeout=0.5) == []  # the reservation is committed meanwhile

        kc = first._kc  # type: ignore[attr-defined]
        commits = 0
        real_commit = kc.commit

        async def counted(*args: object, **kwargs: object) -> None:
            nonlocal commits
            commits += 1
            await real_commit(*args, **kwargs)

        kc.commit = counted
        await broker.publish(queue, b"lone")
        [lone] = await first.fetch(1, timeout=5)
        assert (lone.body, lone.attempt, commits) == (b"lone", 1, 0), "no commit before the hand-out"
        first._kc, first._closed = None, True  # type: ignore[attr-defined]
        await kc.stop()  # a crash: no commit, the group just loses the member

        second = await broker.consume(queue, visibility_timeout=60)
        [again] = await eventually(lambda: second.fetch(1, timeout=1), timeout=30)
        assert (again.body, again.attempt) == (b"lone", 2)
        await again.ack()
        await second.close()
    finally:
        await broker.delete(queue)
        await broker.close()


async def test_a_job_that_kills_every_worker_counts_no_attempts_on_its_neighbours(kafka_url: str):
    """A reservation makes every record it covers count an attempt after a crash, as they may
    have been handed out. That counts once per record: a job that kills each worker taking it
    must not push the job queued behind it past max_tentativas (it did, in the chaos suite)."""
    broker = await connect(create_broker(f"{kafka_url}?partitions=1").url)
    queue = f"t_{uuid.uuid4().hex[:12]}"
    try:
        await broker.publish(queue, b"warm-up")
        first = await broker.consume(queue, visibility_timeout=60, prefetch=1)  # a worker of concurrency 1
        [warm] = await eventually(lambda: first.fetch(1, timeout=1), timeout=20)
        await warm.ack()
        assert await first.fetch(1, timeout=0.5) == []  # the reservation is committed meanwhile
        await broker.publish(queue, b"killer")
        await broker.publish(queue, b"bystander")

        consumer, killer, bystander = first, [], None
        while len(killer) < 4 and len(killer) + (bystander is not None) < 8:
            [taken] = await eventually(lambda: consumer.fetch(1, timeout=1), timeout=30)  # noqa: B023
            if taken.body == b"bystander":
                bystander = taken.attempt
                await taken.ack()
                continue
            killer.append(taken.attempt)
            kc = consumer._kc  # type: ignore[attr-defined]
            consumer._kc, consumer._closed = None, True  # type: ignore[attr-defined]
            await kc.stop()  # it dies right after the hand-out, before any commit of its own
            consumer = await broker.consume(queue, visibility_timeout=60, prefetch=1)
        await consumer.close()
        assert killer == [1, 2, 3, 4], "each crash counts the killer's attempt once"
        assert bystander is not None and bystander <= 2, (killer, bystander)
    finally:
        await broker.delete(queue)
        await broker.close()


async def test_lifecycle_events_are_records_keyed_by_correlation_id(kafka_url: str):
    broker = await connect(kafka_url)
    correlation_id = f"cadeia-{uuid.uuid4().hex[:8]}"
    got: list[bytes] = []
    unsubscribe = await broker.subscribe_events("orq.eventos", got.append)
    reader = AIOKafkaConsumer(  # another service: its own consumer group, from the beginning
        EVENTS_TOPIC, bootstrap_servers=bootstrap(kafka_url), group_id=f"servico-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
    )  # fmt: skip
    await reader.start()
    try:
        body = json.dumps({"correlation_id": correlation_id, "evento": "iniciado"}).encode()
        await broker.publish_event("orq.eventos", body)
        await eventually(lambda: body in got, timeout=20)
        found = None
        for _ in range(40):
            for records in (await reader.getmany(timeout_ms=500)).values():
                found = found or next((r for r in records if r.value == body), None)
            if found:
                break
        assert found is not None, "another service reads the event with a plain consumer"
        assert found.key == correlation_id.encode()
    finally:
        await unsubscribe()
        await reader.stop()
        await broker.close()


async def test_a_refused_connection_never_shows_the_password(kafka_url: str):
    host = bootstrap(kafka_url)
    broker = create_broker(f"kafka://orq:s3cr3t@{host}")  # this server speaks no SASL
    assert "s3cr3t" not in repr(broker)
    broker.connect_timeout = 5
    with pytest.raises(BrokerUnavailable) as caught:
        await broker.connect()
    assert "s3cr3t" not in str(caught.value)
    assert "***" in str(caught.value)


def test_orq_demo_runs_on_kafka(kafka_url: str, tmp_path: Path):
    result = orq("demo", "--jobs", "6", "--broker", kafka_url, env={"ORQ_HOME": str(tmp_path / "home")})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6/6 coletas ok" in result.stdout
    assert kafka_url in result.stdout


async def test_prometheus_shows_the_consumer_group_lag_as_queue_depth(kafka_url: str):
    from prometheus_client import CollectorRegistry

    from orquestrador.worker.metrics import PrometheusMetrics
    from orquestrador.worker.observers import Metrics

    nome = f"lag_{uuid.uuid4().hex[:8]}"
    plugin = Plugin("escavador", nome, dobro, "tests")
    registry = CollectorRegistry()
    observer = Metrics(PrometheusMetrics(registry), [plugin])
    broker = await connect(kafka_url)
    try:
        for i in range(3):
            await broker.publish(plugin.fila, f"job{i}".encode())
        observer.serving(broker)  # reads the depth at once, then every 10 s
        await eventually(lambda: registry.get_sample_value("orq_queue_depth", {"alvo": nome}) == 3, 20)
        await observer.stopping()
    finally:
        await broker.delete(plugin.fila)
        await broker.close()


async def test_a_job_longer_than_the_session_timeout_stays_with_its_worker(kafka_url: str):
    """aiokafka's background heartbeat keeps a busy worker in the group, the runtime's heartbeat
    keeps its lease, and the assignor never moves a busy partition to a worker that joins."""
    nome = f"longo_{uuid.uuid4().hex[:8]}"
    runs: list[str] = []

    async def longo(payload: dict, ctx) -> dict:  # type: ignore[no-untyped-def, type-arg]
        runs.append(ctx.message_id)
        await asyncio.sleep(payload["segundos"])
        return {"ok": True}

    plugin = Plugin("escavador", nome, longo, "tests", takes_context=True)
    first, second = await connect(kafka_url), await connect(kafka_url)
    options = WorkerOptions(visibility_timeout=1.0, fetch_timeout=0.2)  # a session of 6 s (the minimum)
    workers = [Worker(first, [plugin], options)]
    running = [asyncio.create_task(workers[0].run())]
    from orquestrador import AsyncOrquestrador

    orq = AsyncOrquestrador(kafka_url, responder_para=f"res_{uuid.uuid4().hex[:8]}")
    await orq.start()
    try:
        env = await orq.iniciar("iniciar_coleta", nome, {"segundos": 9})
        await eventually(lambda: runs, timeout=30)
        workers.append(Worker(second, [plugin], options))  # joins while the job runs
        running.append(asyncio.create_task(workers[1].run()))
        row = await orq.esperar(env.message_id or "", 60)
    finally:
        for worker in workers:
            worker.stop()
        await asyncio.wait_for(asyncio.gather(*running), 30)
        await first.delete(plugin.fila)
        await first.delete(orq.responder_para)
        await orq.close()
        await first.close()
        await second.close()
    assert row.estado == "ok"
    assert runs == [env.message_id], "one run: never redelivered while it ran"


async def test_kafkas_verifies_the_server_certificate(tmp_path: Path, tls_files: TlsFiles):
    with KafkaServer(tmp_path / "kafka-tls", tls=tls_files) as server:
        broker = await connect(f"{server.tls_url}?tls_ca={tls_files.ca}")
        queue = f"t_{uuid.uuid4().hex[:12]}"
        try:
            await broker.publish(queue, b"over TLS")
            consumer = await broker.consume(queue, visibility_timeout=30)
            [delivery] = await consumer.fetch(1, timeout=10)
            assert delivery.body == b"over TLS"
            await delivery.ack()
            await consumer.close()
        finally:
            await broker.close()

        untrusted = create_broker(server.tls_url)  # the system's CAs never signed the test CA
        untrusted.connect_timeout = 10
        with pytest.raises(BrokerUnavailable) as caught:
            await untrusted.connect()
        assert "ORQ_TLS_CA" in str(caught.value), str(caught.value)
