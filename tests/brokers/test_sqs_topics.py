"""What the topics contract suite cannot see on SQS: the queues and SNS subscriptions behind a
subscription, the filter policy, durable names, and live queues left by dead processes.

Runs against moto in server mode (``ORQ_TEST_SQS_URL`` for another server), looking behind the
adapter's back with plain boto3 clients; every test removes what it made.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import boto3
import pytest

from orquestrador.brokers import connect
from orquestrador.brokers.sqs import SqsBroker
from orquestrador.brokers.sqs.names import MAX_NAME, durable_of, durable_queue
from orquestrador.brokers.sqs.topics import ALIVE_TAG, DURABLE_TAG, SNS_TOPIC, TOPIC_ATTRIBUTE, filter_policy
from orquestrador.errors import BrokerError, PayloadTooLarge, TopicError
from orquestrador.topics import TopicMessage
from tests.conftest import broker_url_for, eventually
from tests.contract.test_topics import Inbox, send

pytestmark = pytest.mark.sqs


@pytest.fixture
def url(request: pytest.FixtureRequest) -> str:
    return broker_url_for("sqs", request)


@pytest.fixture
async def broker(url: str) -> AsyncIterator[SqsBroker]:
    b = await connect(url)
    assert isinstance(b, SqsBroker)
    yield b
    await b.close()


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def aws(url: str) -> tuple[Any, Any]:
    """Plain boto3 SQS and SNS clients, to look behind the adapter's back."""
    options = {
        "region_name": urlsplit(url).hostname or None,
        "endpoint_url": dict(parse_qsl(urlsplit(url).query)).get("endpoint_url"),
    }
    return boto3.client("sqs", **options), boto3.client("sns", **options)


def subscriptions_to(sns: Any, queue: str) -> list[dict[str, Any]]:
    """The SNS subscriptions of the topics' SNS topic whose endpoint is queue ``queue``."""
    arn = sns.create_topic(Name=SNS_TOPIC)["TopicArn"]
    found = sns.list_subscriptions_by_topic(TopicArn=arn)["Subscriptions"]
    return [s for s in found if s["Endpoint"].rsplit(":", 1)[-1] == queue]


def attributes_of(sns: Any, subscription: dict[str, Any]) -> dict[str, str]:
    reply = sns.get_subscription_attributes(SubscriptionArn=subscription["SubscriptionArn"])
    return dict(reply["Attributes"])


def queues(sqs: Any, start: str) -> list[str]:
    return [u.rsplit("/", 1)[-1] for u in sqs.list_queues(QueueNamePrefix=start).get("QueueUrls", [])]


@pytest.mark.parametrize(
    ("pattern", "policy"),
    [
        ("orders.created", ["orders.created"]),
        ("orders.*", [{"prefix": "orders."}]),
        ("orders.*.eu", [{"prefix": "orders."}]),
        ("orq.resultado_coleta.>", [{"prefix": "orq.resultado_coleta."}]),
        ("*.created", [{"exists": True}]),
    ],
)
def test_the_sns_filter_policy_is_the_patterns_literal_part(pattern: str, policy: list[Any]):
    assert filter_policy(pattern) == {TOPIC_ATTRIBUTE: policy}


def test_durable_names_map_to_queue_names_and_back():
    assert durable_queue("audit-log_1") == "orq-durable-audit-log_1"
    assert durable_of("orq-durable-audit-log_1") == "audit-log_1"
    assert durable_of("orq-live-0123456789abcdef") is None
    assert durable_of("escavador_x") is None
    long = durable_queue("x" * 100)
    assert len(long) == MAX_NAME and long.startswith("orq-durable-xxx") and long != durable_queue("x" * 99)
    with pytest.raises(TopicError, match="durable"):
        durable_queue("a.b")


async def test_a_live_subscription_is_a_filtered_raw_queue_gone_on_unsubscribe(
    broker: SqsBroker, aws: tuple[Any, Any], prefix: str
):
    sqs, sns = aws
    before = set(queues(sqs, "orq-live-"))
    stop = await broker.subscribe_topic(f"{prefix}.orders.*", Inbox())
    [queue] = set(queues(sqs, "orq-live-")) - before
    [subscription] = subscriptions_to(sns, queue)
    attributes = sns.get_subscription_attributes(SubscriptionArn=subscription["SubscriptionArn"])[
        "Attributes"
    ]
    assert attributes["RawMessageDelivery"] == "true"
    assert json.loads(attributes["FilterPolicy"]) == {TOPIC_ATTRIBUTE: [{"prefix": f"{prefix}.orders."}]}
    url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    assert int(sqs.list_queue_tags(QueueUrl=url)["Tags"][ALIVE_TAG]) > time.time()

    await stop()
    assert queue not in queues(sqs, "orq-live-")
    assert subscriptions_to(sns, queue) == []


async def test_a_durable_queue_keeps_receiving_after_close_until_deleted(
    url: str, aws: tuple[Any, Any], prefix: str
):
    sqs, sns = aws
    name = f"d{prefix}"
    async with await connect(url) as broker:
        stop = await broker.subscribe_topic(f"{prefix}.*", Inbox(), durable=name)
        await stop()
    async with await connect(url) as broker:
        await send(broker, f"{prefix}.kept")  # nobody listens: the queue holds it
        await send(broker, f"{prefix}.kept.not")  # the filter policy lets it in; matches() will not
        queue_url = sqs.get_queue_url(QueueName=f"orq-durable-{name}")["QueueUrl"]
        assert sqs.list_queue_tags(QueueUrl=queue_url)["Tags"][DURABLE_TAG] == name
        assert not [q for q in await broker.queues() if "orq-" in q]  # no job queue
        attributes = sqs.get_queue_attributes(
            QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"]
        )
        assert attributes["Attributes"]["ApproximateNumberOfMessages"] == "2"

        inbox = Inbox()
        stop = await broker.subscribe_topic(f"{prefix}.*", inbox, durable=name)
        await eventually(lambda: inbox.got, timeout=20)
        await stop()
        assert inbox.topics() == [f"{prefix}.kept"]

        await broker.delete_subscription(name)
        assert f"orq-durable-{name}" not in queues(sqs, "orq-durable-")
        assert subscriptions_to(sns, f"orq-durable-{name}") == []
        await broker.delete_subscription(name)  # twice: nothing left to delete, no error


async def test_a_durable_name_back_with_another_pattern_gets_the_new_patterns_messages(
    broker: SqsBroker, aws: tuple[Any, Any], prefix: str
):
    _sqs, sns = aws
    name = f"d{prefix}"
    stop = await broker.subscribe_topic(f"{prefix}.orders.*", Inbox(), durable=name)
    await stop()
    inbox = Inbox()
    stop = await broker.subscribe_topic(f"{prefix}.payments.*", inbox, durable=name)
    [subscription] = subscriptions_to(sns, f"orq-durable-{name}")  # updated, not doubled
    policy = json.loads(attributes_of(sns, subscription)["FilterPolicy"])
    assert policy == {TOPIC_ATTRIBUTE: [{"prefix": f"{prefix}.payments."}]}
    await send(broker, f"{prefix}.orders.created")
    await send(broker, f"{prefix}.payments.created")
    await eventually(lambda: inbox.got, timeout=20)
    await stop()
    await broker.delete_subscription(name)
    assert inbox.topics() == [f"{prefix}.payments.created"]


async def test_live_queues_of_dead_processes_are_reaped_and_a_live_subscriber_outlives_it(
    broker: SqsBroker, url: str, aws: tuple[Any, Any], prefix: str
):
    sqs, sns = aws
    inbox = Inbox()
    before = set(queues(sqs, "orq-live-"))
    stop = await broker.subscribe_topic(f"{prefix}.*", inbox)
    [queue] = set(queues(sqs, "orq-live-")) - before
    # As if its process had died long ago: its heartbeat is in the past.
    queue_url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    sqs.tag_queue(QueueUrl=queue_url, Tags={ALIVE_TAG: str(int(time.time()) - 1)})

    async with await connect(url) as other:
        assert isinstance(other, SqsBroker)
        assert await other.reap_live_subscriptions() >= 1
        assert queue not in queues(sqs, "orq-live-")
        assert subscriptions_to(sns, queue) == []

        # The subscriber still running finds its queue gone and subscribes a new one.
        async def delivered() -> bool:
            await send(other, f"{prefix}.again")
            return bool(inbox.got)

        await eventually(delivered, timeout=30, interval=1.0)
    await stop()
    assert set(queues(sqs, "orq-live-")) <= before  # the new queue went on unsubscribe too


async def test_topics_work_on_a_fifo_broker(url: str, prefix: str):
    """FIFO is for job queues; SNS standard topics feed standard queues, whatever the URL says."""
    fifo_url = f"{url}{'&' if '?' in url else '?'}fifo=true"
    async with await connect(fifo_url) as broker:
        inbox = Inbox()
        stop = await broker.subscribe_topic(f"{prefix}.>", inbox)
        await broker.publish_topic(f"{prefix}.a.b", TopicMessage(f"{prefix}.a.b").encode())
        await eventually(lambda: inbox.got, timeout=20)
        await stop()
    assert inbox.topics() == [f"{prefix}.a.b"]


async def test_a_durable_subscription_whose_queue_was_deleted_makes_it_again(
    broker: SqsBroker, aws: tuple[Any, Any], prefix: str, caplog: pytest.LogCaptureFixture
):
    sqs, _sns = aws
    name, inbox = f"d{prefix}", Inbox()
    stop = await broker.subscribe_topic(f"{prefix}.*", inbox, durable=name)
    sqs.delete_queue(QueueUrl=sqs.get_queue_url(QueueName=f"orq-durable-{name}")["QueueUrl"])

    async def delivered() -> bool:
        with contextlib.suppress(BrokerError):  # moto refuses to publish to a missing queue (AWS drops it)
            await send(broker, f"{prefix}.again")
        return bool(inbox.got)

    await eventually(delivered, timeout=30, interval=1.0)
    await stop()
    await broker.delete_subscription(name)
    assert "was deleted" in caplog.text  # said, not silent


async def test_a_batch_of_topic_messages_goes_out_ten_to_a_call(broker: SqsBroker, url: str, prefix: str):
    inbox = Inbox()
    stop = await broker.subscribe_topic(f"{prefix}.>", inbox)
    items = [(f"{prefix}.n{i}", TopicMessage(f"{prefix}.n{i}", i).encode()) for i in range(25)]
    assert await broker.publish_topics(items) == 0
    await eventually(lambda: len(inbox.got) >= 25, timeout=30)
    await stop()
    assert sorted(d for _, d in inbox.got) == list(range(25))

    closed = await connect(url)
    await closed.close()
    assert await closed.publish_topics(items[:3]) == 3  # counted as failed, never raised


async def test_messages_over_snss_limit_are_refused_clearly(broker: SqsBroker, prefix: str):
    """SNS carries 256 KiB a message (and a batch): a topic message may be up to 1 MiB elsewhere."""
    big = TopicMessage(f"{prefix}.big", "x" * 300_000).encode()
    with pytest.raises(PayloadTooLarge, match="reference"):
        await broker.publish_topic(f"{prefix}.big", big)

    inbox = Inbox()
    stop = await broker.subscribe_topic(f"{prefix}.*", inbox)
    items = [(f"{prefix}.mid", TopicMessage(f"{prefix}.mid", "y" * 100_000).encode()) for _ in range(3)]
    items += [(f"{prefix}.big", big)] + [(f"{prefix}.small", TopicMessage(f"{prefix}.small").encode())] * 12
    assert await broker.publish_topics(items) == 1  # the big one; the rest in batches SNS takes
    await eventually(lambda: len(inbox.got) >= 15, timeout=30)
    await stop()
    assert sorted(inbox.topics()) == [f"{prefix}.mid"] * 3 + [f"{prefix}.small"] * 12
