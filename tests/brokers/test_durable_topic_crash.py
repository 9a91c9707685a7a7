"""A durable topic subscriber killed in the middle of a callback loses nothing: the message comes
again to the next subscriber of the name (at least once), on the brokers whose durable topics
this branch maps (SQS: when the visibility timeout lapses; Kafka: when the group's session does).
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import uuid

import pytest

from orquestrador.brokers import connect
from tests.conftest import broker_url_for, eventually
from tests.contract.test_topics import Inbox, send

BROKERS = [pytest.param(name, id=name, marks=getattr(pytest.mark, name)) for name in ("sqs", "kafka")]

# Holds the first message for ever, after saying so. On SQS the message's visibility timeout is
# shortened (the queue is made with it) so the test waits seconds, not a minute.
STUCK = """
import asyncio, sys
import orquestrador.brokers.sqs.topics as sqs_topics
from orquestrador.brokers import connect

sqs_topics.VISIBILITY = 4

async def main(url, pattern, durable):
    broker = await connect(url)
    async def hold(topic, body):
        print("holding", topic, flush=True)
        await asyncio.sleep(3600)
    await broker.subscribe_topic(pattern, hold, durable=durable)
    print("ready", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main(*sys.argv[1:]))
"""


@pytest.fixture(params=BROKERS)
def url(request: pytest.FixtureRequest) -> str:
    return broker_url_for(request.param, request)


async def test_a_message_held_by_a_killed_durable_subscriber_comes_again(url: str):
    prefix, inbox = f"t{uuid.uuid4().hex[:10]}", Inbox()
    name = f"d{prefix}"
    child = subprocess.Popen([sys.executable, "-c", STUCK, url, f"{prefix}.*", name],
                             stdout=subprocess.PIPE, text=True)  # fmt: skip
    broker = await connect(url)
    try:
        assert child.stdout is not None
        assert await asyncio.to_thread(child.stdout.readline) == "ready\n"
        await send(broker, f"{prefix}.job", 7)
        assert await asyncio.to_thread(child.stdout.readline) == f"holding {prefix}.job\n"
        child.send_signal(signal.SIGKILL)
        child.wait(10)

        stop = await broker.subscribe_topic(f"{prefix}.*", inbox, durable=name)
        await eventually(lambda: inbox.got, timeout=60)
        await stop()
        assert inbox.got == [(f"{prefix}.job", 7)]
    finally:
        if child.poll() is None:
            child.kill()
        await broker.delete_subscription(name)
        await broker.close()
