"""What the contract suite cannot see: how the SQS adapter maps names, headers, bodies, the
redrive policy, FIFO queues and events onto SQS.

Runs against moto in server mode (``ORQ_TEST_SQS_URL`` for another server); every test deletes
the queues it created, because the server is shared. moto differs from AWS where it matters
here: no 60 s wait before a deleted queue's name can be used again, and no IAM (the queue
policy the events subscription sets is not checked).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from urllib.parse import parse_qsl, urlsplit

import boto3
import pytest

from orquestrador import AsyncOrquestrador, Contexto, Retry, Worker, WorkerOptions
from orquestrador.brokers import connect
from orquestrador.brokers.base import DLQ_REASON, dlq_of
from orquestrador.brokers.sqs import SqsBroker, queue_name, sqs_name
from orquestrador.brokers.sqs.sender import Sender
from orquestrador.errors import BrokerError, BrokerUnavailable, ConfigError
from orquestrador.plugins import Plugin
from orquestrador.settings import check_url
from tests.conftest import broker_url_for, eventually

pytestmark = pytest.mark.sqs


@pytest.fixture
def url(request: pytest.FixtureRequest) -> str:
    return broker_url_for("sqs", request)


@pytest.fixture
def endpoint(url: str) -> str | None:
    return dict(parse_qsl(urlsplit(url).query)).get("endpoint_url")


@pytest.fixture
def raw(url: str, endpoint: str | None):  # type: ignore[no-untyped-def]
    """A plain boto3 client, to look behind the adapter's back."""
    return boto3.client("sqs", region_name=urlsplit(url).hostname or None, endpoint_url=endpoint)


@pytest.fixture
async def broker(url: str) -> AsyncIterator[SqsBroker]:
    b = await connect(url)
    assert isinstance(b, SqsBroker)
    yield b
    await b.close()


@pytest.fixture
def name() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


def with_options(url: str, **options: str) -> str:
    extra = "&".join(f"{k}={v}" for k, v in options.items())
    return f"{url}{'&' if '?' in url else '?'}{extra}"


# -- names (no server) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("queue", "fifo", "expected"),
    [
        ("escavador_youtube", False, "escavador_youtube"),
        ("escavador_youtube.dlq", False, "escavador_youtube__dlq"),
        ("res-1", True, "res-1.fifo"),
        ("res-1.dlq", True, "res-1__dlq.fifo"),
    ],
)
def test_toolkit_names_map_to_sqs_names_and_back(queue: str, fifo: bool, expected: str):
    assert sqs_name(queue, fifo=fifo) == expected
    assert queue_name(expected) == queue


def test_a_name_too_long_for_sqs_is_shortened_with_a_hash_within_80_characters():
    long = "escavador_" + "x" * 150
    names = {
        sqs_name(long),
        sqs_name(long + ".dlq"),
        sqs_name(long, fifo=True),
        sqs_name(long + ".dlq", fifo=True),
    }
    assert all(len(n) <= 80 for n in names) and len(names) == 4
    assert sqs_name(long + ".dlq").endswith("__dlq") and sqs_name(long, fifo=True).endswith(".fifo")
    assert sqs_name(long) != sqs_name("escavador_" + "x" * 149 + "y"), "the hash tells them apart"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqs://AKIA:secret@us-east-1", "never carry credentials"),
        ("sqs://us-east-1?visibility=3", "unknown option"),
        ("sqs://us-east-1?fifo=maybe", "invalid fifo"),
        ("sqs://us-east-1:4566", "endpoint_url"),
        ("sqs://us-east-1?max_receives=0", "max_receives"),
    ],
)
def test_bad_urls_are_refused_with_what_to_do(url: str, message: str):
    with pytest.raises(ConfigError, match=message) as caught:
        SqsBroker(url)
    assert "secret" not in str(caught.value)


def test_a_url_without_region_is_accepted_the_region_comes_from_the_environment():
    assert check_url("sqs://") == "sqs://"
    assert SqsBroker("sqs://").region is None


async def test_sends_of_one_loop_turn_leave_as_batches_of_ten_within_the_byte_limit():
    """The batching alone, over a recording send_batch: each caller still gets its own answer."""
    calls: list[list[str]] = []

    async def send_batch(url: str, entries: list[dict]) -> dict:  # type: ignore[type-arg]
        calls.append([e["MessageBody"] for e in entries])
        refused = [
            {"Id": e["Id"], "Code": "InvalidMessageContents"} for e in entries if e["MessageBody"] == "bad"
        ]
        return {"Failed": refused}

    sender = Sender(send_batch)
    small = [sender.send("q", {"MessageBody": f"m{i}"}) for i in range(23)]
    big = [sender.send("q", {"MessageBody": "x" * 100_000}) for _ in range(3)]
    outcomes = await asyncio.gather(
        *small, *big, sender.send("q", {"MessageBody": "bad"}), return_exceptions=True
    )

    assert [len(c) for c in calls] == [10, 10, 5, 2]  # 3 small + 2 big fill 256 KiB; the last big + bad
    assert outcomes[:-1] == [None] * 26
    assert isinstance(outcomes[-1], BrokerError) and "InvalidMessageContents" in str(outcomes[-1])


# -- against the server --------------------------------------------------------------------


async def test_queues_are_created_with_sqs_names_a_redrive_policy_and_the_toolkit_name_tag(
    broker: SqsBroker, raw, name: str
):  # type: ignore[no-untyped-def]
    await broker.declare(name)
    try:
        main = raw.get_queue_url(QueueName=name)["QueueUrl"]
        dead = raw.get_queue_url(QueueName=f"{name}__dlq")["QueueUrl"]
        attributes = raw.get_queue_attributes(QueueUrl=main, AttributeNames=["All"])["Attributes"]
        policy = json.loads(attributes["RedrivePolicy"])
        dlq_arn = raw.get_queue_attributes(QueueUrl=dead, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        assert policy["deadLetterTargetArn"] == dlq_arn
        assert int(policy["maxReceiveCount"]) == broker.max_receives
        assert attributes["MessageRetentionPeriod"] == "1209600"
        assert raw.list_queue_tags(QueueUrl=dead)["Tags"]["orquestrador-queue"] == dlq_of(name)
        assert {name, dlq_of(name)} <= set(await broker.queues())
    finally:
        await broker.delete(name)
    assert name not in await broker.queues()


async def test_a_queue_deleted_by_another_client_is_created_again(broker: SqsBroker, url: str, name: str):
    await broker.publish(name, b"one")
    consumer = await broker.consume(name, visibility_timeout=5)
    other = await connect(url)
    await other.delete(name)
    await other.close()
    try:
        await broker.publish(name, b"two")  # this connection still has the old URL
        [delivery] = await eventually(lambda: consumer.fetch(1, timeout=1))
        assert delivery.body == b"two"
        await delivery.dead_letter("after a re-creation the DLQ is back too")
        assert (await broker.stats(name)).dead_letters == 1
    finally:
        await consumer.close()
        await broker.delete(name)


async def test_a_long_name_is_listed_under_its_own_name(broker: SqsBroker):
    long = "t_" + uuid.uuid4().hex + "x" * 100
    await broker.publish(long, b"job")
    try:
        assert {long, dlq_of(long)} <= set(await broker.queues())
        assert (await broker.stats(long)).depth == 1
    finally:
        await broker.delete(long)


async def test_more_headers_than_sqs_attributes_all_arrive(broker: SqsBroker, name: str):
    headers = {f"x-h{i}": f"v{i}" for i in range(30)} | {"traceparent": "00-abc-def-01"}
    await broker.publish(name, b"job", message_id="m-1", headers=headers)
    consumer = await broker.consume(name, visibility_timeout=5)
    try:
        [delivery] = await eventually(lambda: consumer.fetch(1, timeout=1))
        assert delivery.headers == headers
        assert delivery.message_id == "m-1"
        await delivery.ack()
    finally:
        await consumer.close()
        await broker.delete(name)


async def test_a_body_sqs_cannot_carry_as_text_round_trips_untouched(broker: SqsBroker, raw, name: str):  # type: ignore[no-untyped-def]
    bodies = [bytes(range(256)), b"\x00nul", "ação".encode("latin-1"), "plain ação".encode()]
    for body in bodies:
        await broker.publish(name, body)
    consumer = await broker.consume(name, visibility_timeout=5)
    got: list[bytes] = []
    try:
        while len(got) < len(bodies):
            batch = await consumer.fetch(10, timeout=1)
            got += [d.body for d in batch]
            await broker.ack_many(batch)
    finally:
        await consumer.close()
    assert sorted(got) == sorted(bodies)
    await broker.publish(name, "plain ação".encode())
    url = raw.get_queue_url(QueueName=name)["QueueUrl"]
    [message] = raw.receive_message(QueueUrl=url, MessageAttributeNames=["All"])["Messages"]
    assert message["Body"] == "plain ação", "text bodies stay readable by any SQS client"
    await broker.delete(name)


async def delivered_by_hand(broker: SqsBroker, raw, name: str, attribute: str, value: str):  # type: ignore[no-untyped-def]
    """A message sent with plain boto3 carrying one string attribute, as the adapter reads it."""
    await broker.declare(name)
    url = raw.get_queue_url(QueueName=name)["QueueUrl"]
    attributes = {attribute: {"DataType": "String", "StringValue": value}}
    raw.send_message(QueueUrl=url, MessageBody="{}", MessageAttributes=attributes)
    consumer = await broker.consume(name, visibility_timeout=5)
    [delivery] = await eventually(lambda: consumer.fetch(1, timeout=1))
    await consumer.close()
    return delivery


async def test_string_attributes_of_a_plain_producer_read_as_headers(broker: SqsBroker, raw, name: str):  # type: ignore[no-untyped-def]
    try:
        delivery = await delivered_by_hand(broker, raw, name, "traceparent", "00-aa-bb-01")
        assert delivery.headers == {"traceparent": "00-aa-bb-01"}
        assert delivery.problem is None
        await delivery.ack()
    finally:
        await broker.delete(name)


async def test_a_forged_headers_attribute_is_a_problem_not_a_crash(broker: SqsBroker, raw, name: str):  # type: ignore[no-untyped-def]
    try:
        delivery = await delivered_by_hand(broker, raw, name, "orq-headers", "[1, 2")
        assert delivery.problem is not None and "orq-headers" in delivery.problem
        await delivery.dead_letter(delivery.problem)
        assert (await broker.stats(name)).dead_letters == 1
    finally:
        await broker.delete(name)


async def test_the_redrive_policy_catches_a_message_received_too_often(url: str, name: str):
    broker = await connect(with_options(url, max_receives="2"))
    await broker.publish(name, b"kills its workers")
    consumer = await broker.consume(name, visibility_timeout=1)
    try:
        for attempt in (1, 2):
            [delivery] = await eventually(lambda: consumer.fetch(1, timeout=1))
            assert delivery.attempt == attempt
            await delivery.nack()  # as if its worker died
        assert await consumer.fetch(1, timeout=1.5) == []
        stats = await broker.stats(name)
        assert (stats.depth, stats.dead_letters) == (0, 1)
        [dead] = await broker.peek(dlq_of(name))
        assert dead.body == b"kills its workers" and DLQ_REASON not in dead.headers
    finally:
        await consumer.close()
        await broker.delete(name)
        await broker.close()


async def test_dead_letter_queues_keep_letters_for_orq_dlq_max_age(
    url: str, raw, name: str, monkeypatch: pytest.MonkeyPatch
):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("ORQ_DLQ_MAX_AGE", "2h")
    broker = await connect(url)
    try:
        await broker.declare(name)
        dead = raw.get_queue_url(QueueName=f"{name}__dlq")["QueueUrl"]
        kept = raw.get_queue_attributes(QueueUrl=dead, AttributeNames=["MessageRetentionPeriod"])
        assert kept["Attributes"]["MessageRetentionPeriod"] == "7200"
    finally:
        await broker.delete(name)
        await broker.close()


async def test_the_endpoint_comes_from_aws_endpoint_url_sqs(
    url: str, endpoint: str | None, name: str, monkeypatch: pytest.MonkeyPatch
):
    if endpoint is None:
        pytest.skip("ORQ_TEST_SQS_URL names no endpoint_url: nothing to move into the environment")
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", endpoint)
    broker = await connect(f"sqs://{urlsplit(url).hostname}")
    try:
        await broker.publish(name, b"via the environment")
        assert (await broker.stats(name)).depth == 1
    finally:
        await broker.delete(name)
        await broker.close()


async def test_without_credentials_connect_says_where_they_come_from(
    url: str, monkeypatch: pytest.MonkeyPatch, tmp_path
):  # type: ignore[no-untyped-def]
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    with pytest.raises(ConfigError, match=r"AWS_ACCESS_KEY_ID.*AWS_PROFILE.*role"):
        await connect(url)


async def test_without_a_region_connect_says_how_to_give_one(
    endpoint: str | None, monkeypatch: pytest.MonkeyPatch, tmp_path
):  # type: ignore[no-untyped-def]
    for variable in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    with pytest.raises(ConfigError, match=r"no AWS region: name it in the URL \(sqs://us-east-1\)"):
        await connect(f"sqs://?endpoint_url={endpoint or 'http://127.0.0.1:1'}")


async def test_an_endpoint_that_does_not_answer_is_unavailable():
    from tests.servers.process import free_port

    with pytest.raises(BrokerUnavailable, match=r"cannot reach SQS at http://127\.0\.0\.1"):
        await connect(f"sqs://us-east-1?endpoint_url=http://127.0.0.1:{free_port()}")


async def test_events_go_over_sns_with_nats_style_wildcards(broker: SqsBroker):
    before = set(await _event_queues(broker))
    prefix = f"t{uuid.uuid4().hex[:8]}"
    exact: list[bytes] = []
    wild: list[bytes] = []
    stop_exact = await broker.subscribe_events(f"{prefix}.job.started", exact.append)
    stop_wild = await broker.subscribe_events(f"{prefix}.>", wild.append)

    await broker.publish_event(f"{prefix}.job.started", b"a")
    await broker.publish_event(f"{prefix}.job.done", b"b")
    await broker.publish_event("other.job.done", b"c")

    await eventually(lambda: len(wild) == 2 and len(exact) == 1, timeout=15)
    assert exact == [b"a"] and sorted(wild) == [b"a", b"b"]
    await stop_exact()
    await stop_wild()
    assert set(await _event_queues(broker)) <= before, "unsubscribing removes its queue"


async def _event_queues(broker: SqsBroker) -> list[str]:
    reply = await broker.sqs.list_queues(QueueNamePrefix="orq-events-")
    return list(reply.get("QueueUrls", []))


# -- FIFO ----------------------------------------------------------------------------------


@pytest.fixture
async def fifo(url: str) -> AsyncIterator[SqsBroker]:
    b = await connect(with_options(url, fifo="true"))
    assert isinstance(b, SqsBroker) and b.fifo
    yield b
    await b.close()


def envelope(correlation_id: str, i: int) -> bytes:
    return json.dumps(
        {"correlation_id": correlation_id, "tipo_evento": "iniciar_coleta", "payload": {"i": i}}
    ).encode()


async def test_fifo_keeps_a_chains_order_and_its_queues_end_in_fifo(fifo: SqsBroker, raw, name: str):  # type: ignore[no-untyped-def]
    chain = str(uuid.uuid4())
    await asyncio.gather(
        *(fifo.publish(name, envelope(chain, i), message_id=f"{chain}-{i}") for i in range(8))
    )
    consumer = await fifo.consume(name, visibility_timeout=5)
    seen: list[int] = []
    try:
        assert raw.get_queue_url(QueueName=f"{name}.fifo")["QueueUrl"]
        assert raw.get_queue_url(QueueName=f"{name}__dlq.fifo")["QueueUrl"]
        while len(seen) < 8:
            for delivery in await consumer.fetch(3, timeout=1):
                seen.append(json.loads(delivery.body)["payload"]["i"])
                await delivery.ack()
    finally:
        await consumer.close()
        await fifo.delete(name)
    assert seen == sorted(seen) == list(range(8))


async def test_fifo_drops_an_id_published_again_from_another_connection(fifo: SqsBroker, url: str, name: str):
    other = await connect(with_options(url, fifo="true"))
    try:
        await fifo.publish(name, envelope("c", 1), message_id="same-id")
        await other.publish(name, envelope("c", 1), message_id="same-id")
        await other.publish(name, envelope("c", 2), message_id="other-id")
        assert (await fifo.stats(name)).depth == 2
    finally:
        await fifo.delete(name)
        await other.close()


async def test_fifo_dead_letters_and_replays(fifo: SqsBroker, name: str):
    await fifo.publish(name, envelope("c", 1), message_id="m1")
    consumer = await fifo.consume(name, visibility_timeout=5)
    try:
        [delivery] = await eventually(lambda: consumer.fetch(1, timeout=1))
        await delivery.dead_letter("poison", error_type="EnvelopeError")
        assert (await fifo.stats(name)).dead_letters == 1
        assert await fifo.replay(name) == 1
        [back] = await eventually(lambda: consumer.fetch(1, timeout=1))
        assert back.body == envelope("c", 1) and DLQ_REASON not in back.headers
        await back.ack()
    finally:
        await consumer.close()
        await fifo.delete(name)


async def test_jobs_of_one_chain_run_in_order_through_a_worker_on_fifo_queues(url: str, name: str):
    """The runtime on FIFO: jobs, a delayed retry (a visibility change, not a copy), results."""
    fifo_url = with_options(url, fifo="true")
    order: list[int] = []

    def em_ordem(payload: dict, ctx: Contexto) -> dict:  # type: ignore[type-arg]
        if payload["i"] == 1 and ctx.tentativa == 1:
            raise Retry("once more", delay=1)  # the chain's later jobs wait behind it
        order.append(payload["i"])
        return {"i": payload["i"]}

    orq = AsyncOrquestrador(fifo_url, responder_para=f"res_{name}")
    await orq.start()
    broker = await connect(fifo_url)
    plugin = Plugin("escavador", name, em_ordem, "tests", takes_context=True)
    worker = Worker(broker, [plugin], WorkerOptions(concurrency=4, fetch_timeout=0.5))
    running = asyncio.create_task(worker.run())
    try:
        first = await orq.iniciar("iniciar_coleta", name, {"i": 0})
        chain = first.correlation_id
        sent = [first] + [
            await orq.iniciar("iniciar_coleta", name, {"i": i}, correlation_id=chain) for i in range(1, 4)
        ]
        rows = [await orq.esperar(e.message_id or "", 60) for e in sent]
    finally:
        worker.stop()
        await asyncio.wait_for(running, 30)
        for queue in (plugin.fila, f"res_{name}"):
            await broker.delete(queue)
        await broker.close()
        await orq.close()
    assert [r.estado for r in rows] == ["ok"] * 4
    assert [r.tentativa for r in rows] == [1, 2, 1, 1]
    assert order == [0, 1, 2, 3], "a chain's jobs run one after another, in order"
