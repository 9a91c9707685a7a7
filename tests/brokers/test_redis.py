"""What the contract suite cannot see: how the Redis adapter uses streams, groups and keys.

Runs against the real Redis (``ORQ_TEST_REDIS_URL``, default 127.0.0.1:6379); every test
deletes what it created, because the server is shared.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from orquestrador.brokers import connect, create_broker
from orquestrador.brokers.redis import GROUP, RedisBroker, delayed_key, stream_key
from orquestrador.errors import BrokerUnavailable, ConfigError
from tests.conftest import broker_url_for, eventually

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def redis_url(request: pytest.FixtureRequest) -> str:
    return broker_url_for("redis", request)


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A plain client, to look at the keys behind the adapter's back."""
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def broker(redis_url: str) -> AsyncIterator[RedisBroker]:
    b = RedisBroker(redis_url)
    await b.connect()
    yield b
    await b.close()


@pytest.fixture
async def queue(broker: RedisBroker) -> AsyncIterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    await broker.declare(name)
    yield name
    await broker.delete(name)


async def test_acked_entries_do_not_pile_up(broker: RedisBroker, queue: str, raw: aioredis.Redis):
    await broker.publish_many(queue, ((f"m{i}".encode(), None) for i in range(500)))
    assert await raw.xlen(stream_key(queue)) == 500
    consumer = await broker.consume(queue, visibility_timeout=5.0)
    done = 0
    while batch := await consumer.fetch(100, timeout=0.5):
        for delivery in batch:
            await delivery.ack()
        done += len(batch)
    await consumer.close()

    assert done == 500
    assert await raw.xlen(stream_key(queue)) == 0, "ack must XDEL, not only XACK"
    stats = await broker.stats(queue)
    assert (stats.depth, stats.in_flight, stats.consumers) == (0, 0, 0)


KILLED_WORKER = """
import asyncio, sys
from orquestrador.brokers.redis import RedisBroker

async def main():
    broker = RedisBroker(sys.argv[1])
    await broker.connect()
    consumer = await broker.consume(sys.argv[2], visibility_timeout=1.0)
    batch = []
    while not batch:
        batch = await consumer.fetch(1, timeout=1.0)
    print("got", batch[0].body.decode(), batch[0].attempt, flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


async def test_a_sigkilled_consumers_job_goes_to_another_consumer(
    broker: RedisBroker, queue: str, redis_url: str
):
    await broker.publish(queue, b"job-1")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_WORKER, redis_url, queue],
        stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env,
    )  # fmt: skip
    try:
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), timeout=20)  # type: ignore[union-attr]
        assert line.split() == ["got", "job-1", "1"]
        assert (await broker.stats(queue)).in_flight == 1
        os.kill(proc.pid, signal.SIGKILL)
        await asyncio.to_thread(proc.wait, 10)

        survivor = await broker.consume(queue, visibility_timeout=1.0)
        [delivery] = await eventually(lambda: survivor.fetch(1, timeout=0.3), timeout=10)
        assert (delivery.body, delivery.attempt) == (b"job-1", 2)
        await delivery.ack()
        await survivor.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stats = await broker.stats(queue)
    assert (stats.depth, stats.in_flight) == (0, 0)


async def test_delayed_nack_is_hidden_until_due_and_carries_the_attempt(
    broker: RedisBroker, queue: str, raw: aioredis.Redis
):
    await broker.publish(queue, b"later", message_id="mid-1", headers={"k": "v"})
    consumer = await broker.consume(queue, visibility_timeout=10.0)
    [first] = await consumer.fetch(1, timeout=2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await first.nack(delay=1.0)

    assert await raw.xlen(stream_key(queue)) == 0, "the original is acked with the copy written"
    assert await raw.zcard(delayed_key(queue)) == 1
    assert (await broker.stats(queue)).depth == 1, "a delayed copy still counts as waiting"
    assert await consumer.fetch(1, timeout=0.5) == []

    [second] = await eventually(lambda: consumer.fetch(1, timeout=0.3), timeout=10)
    assert loop.time() - started >= 0.95
    assert (second.body, second.attempt) == (b"later", 2)
    assert (second.message_id, second.headers) == ("mid-1", {"k": "v"})

    await second.nack(delay=0.2)
    [third] = await eventually(lambda: consumer.fetch(1, timeout=0.3), timeout=10)
    assert third.attempt == 3, "attempts carried by the copy add up"
    await third.nack()  # no delay: redelivered at once, counted by the pending list
    [fourth] = await eventually(lambda: consumer.fetch(1, timeout=0.3), timeout=10)
    assert fourth.attempt == 4
    await fourth.ack()
    assert await raw.exists(delayed_key(queue), delayed_key(queue) + ":msgs") == 0
    await consumer.close()


async def test_two_competing_consumers_never_both_receive_a_moved_copy(broker: RedisBroker, queue: str):
    n = 30
    await broker.publish_many(queue, ((f"m{i}".encode(), None) for i in range(n)))
    first = await broker.consume(queue, visibility_timeout=10.0)
    got = await first.fetch(n, timeout=2)
    assert len(got) == n
    for delivery in got:
        await delivery.nack(delay=0.5)

    consumers = [await broker.consume(queue, visibility_timeout=10.0) for _ in range(2)]
    seen: list[tuple[bytes, int]] = []

    async def drain(consumer):  # type: ignore[no-untyped-def]
        idle = 0
        while idle < 3:
            batch = await consumer.fetch(2, timeout=0.4)
            idle = 0 if batch else idle + 1
            for delivery in batch:
                seen.append((delivery.body, delivery.attempt))
                await delivery.ack()

    await asyncio.gather(*(drain(c) for c in consumers))
    assert sorted(seen) == sorted((f"m{i}".encode(), 2) for i in range(n))
    for consumer in [first, *consumers]:
        await consumer.close()


async def test_maxlen_caps_the_stream_approximately(redis_url: str, raw: aioredis.Redis):
    sep = "&" if "?" in redis_url else "?"
    capped = RedisBroker(f"{redis_url}{sep}maxlen=100")
    assert capped.maxlen == 100
    assert RedisBroker(redis_url, maxlen=7).maxlen == 7
    await capped.connect()
    queue = f"t_{uuid.uuid4().hex[:12]}"
    try:
        await capped.publish_many(queue, ((b"x", None) for _ in range(1000)))
        for _ in range(100):
            await capped.publish(queue, b"y")
        length = await raw.xlen(stream_key(queue))
        assert 100 <= length <= 300, length
    finally:
        await capped.delete(queue)
        await capped.close()


async def test_unreachable_redis_fails_in_one_line_without_the_password():
    url = "redis://worker:s3cret-pw@127.0.0.1:1/0"
    broker = create_broker(url)
    assert isinstance(broker, RedisBroker)
    assert "s3cret-pw" not in repr(broker)
    with pytest.raises(BrokerUnavailable) as info:
        await broker.connect()
    message = str(info.value)
    assert message.startswith("cannot reach Redis at redis://worker:***@127.0.0.1:1/0")
    assert "is the server running?" in message
    assert "s3cret-pw" not in message and "\n" not in message
    assert info.value.__cause__ is None and info.value.__context__ is not None

    with pytest.raises(BrokerUnavailable, match="cannot reach Redis"):
        await connect("rediss://:s3cret-pw@127.0.0.1:1")


def test_bad_settings_in_the_url_are_config_errors():
    with pytest.raises(ConfigError, match="maxlen") as info:
        RedisBroker("redis://:s3cret-pw@127.0.0.1:6379/0?maxlen=lots")
    assert "s3cret-pw" not in str(info.value)
    with pytest.raises(ConfigError, match="maxlen"):
        RedisBroker("redis://127.0.0.1:6379/0", maxlen=0)


async def test_unknown_url_options_are_config_errors(redis_url: str):
    sep = "&" if "?" in redis_url else "?"
    with pytest.raises(ConfigError, match="unsupported option"):
        await RedisBroker(f"{redis_url}{sep}no_such_option=1").connect()
    with pytest.raises(ConfigError, match="invalid Redis URL"):
        await RedisBroker(f"{redis_url}{sep}socket_timeout=soon").connect()


async def test_fetch_survives_a_lost_connection_and_a_vanished_group(
    broker: RedisBroker, queue: str, raw: aioredis.Redis
):
    consumer = await broker.consume(queue, visibility_timeout=1.0)
    await broker.publish(queue, b"one")
    own = await broker.redis.client_id()  # only ever kill our own connection: the server is shared
    await raw.client_kill_filter(_id=own)
    [delivery] = await eventually(lambda: consumer.fetch(1, timeout=0.3), timeout=10)
    assert delivery.body == b"one"
    await delivery.ack()

    await raw.xgroup_destroy(stream_key(queue), GROUP)
    await raw.xadd(stream_key(queue), {"b": b"two"})  # e.g. XADDed by hand meanwhile
    [delivery] = await eventually(lambda: consumer.fetch(1, timeout=0.3), timeout=10)
    assert (delivery.body, delivery.attempt) == (b"two", 1)
    await delivery.ack()
    await consumer.close()


async def test_a_delivery_that_lost_its_lease_cannot_steal_the_entry_back(
    broker: RedisBroker, queue: str, raw: aioredis.Redis
):
    await broker.publish(queue, b"job")
    slow = await broker.consume(queue, visibility_timeout=0.5)
    [stale] = await slow.fetch(1, timeout=2)
    other = await broker.consume(queue, visibility_timeout=0.5)
    [fresh] = await eventually(lambda: other.fetch(1, timeout=0.3), timeout=10)
    assert fresh.attempt == 2

    await stale.heartbeat()
    await stale.nack()
    [owner] = await raw.xpending_range(stream_key(queue), GROUP, "-", "+", 10)
    assert owner["consumer"].decode() == other.name
    assert owner["times_delivered"] == 2
    assert owner["time_since_delivered"] < 10_000, "the stale nack must not back-date it"

    await fresh.ack()
    for consumer in (slow, other):
        await consumer.close()


async def test_publish_is_idempotent_by_message_id_but_replays_are_kept(
    broker: RedisBroker, queue: str, raw: aioredis.Redis
):
    await broker.publish(queue, b"once", message_id="abc")
    await broker.publish(queue, b"once", message_id="abc")
    assert await raw.xlen(stream_key(queue)) == 1

    consumer = await broker.consume(queue, visibility_timeout=5.0)
    [delivery] = await consumer.fetch(1, timeout=2)
    assert delivery.message_id == "abc"
    await delivery.dead_letter("boom")
    assert await broker.replay(queue) == 1
    [again] = await consumer.fetch(1, timeout=2)
    assert again.body == b"once"
    await again.ack()
    await consumer.close()
    await broker.delete(queue)
    assert await raw.keys(f"orq:dedup:{queue}:*") == []


async def test_a_batch_publish_costs_no_script_check_and_survives_a_server_that_forgot_its_scripts(
    broker: RedisBroker, queue: str, raw: aioredis.Redis
):
    await broker.publish_many(queue, [(b"a", "m1"), (b"b", "m2")])
    await raw.config_resetstat()
    await broker.publish_many(queue, [(b"c", "m3"), (b"d", "m4")])
    stats = await raw.info("commandstats")
    assert "cmdstat_script|exists" not in stats  # redis-py's own way asks before every pipeline

    await raw.script_flush()  # what a restarted server without persistence has forgotten
    await broker.publish_many(queue, [(b"e", "m5"), (b"f", None), (b"a", "m1")])  # m1: a repeat
    consumer = await broker.consume(queue, visibility_timeout=5.0)
    got = await consumer.fetch(10, timeout=1)
    assert sorted(d.body for d in got) == [b"a", b"b", b"c", b"d", b"e", b"f"]  # each once
    await broker.ack_many(got)
    await consumer.close()


async def test_purge_keeps_entries_in_flight(broker: RedisBroker, queue: str):
    await broker.publish_many(queue, ((f"m{i}".encode(), None) for i in range(3)))
    consumer = await broker.consume(queue, visibility_timeout=5.0)
    [busy] = await consumer.fetch(1, timeout=2)
    await busy.nack(delay=30)  # a delayed copy is waiting too
    [busy] = await consumer.fetch(1, timeout=2)

    assert await broker.purge(queue) == 2
    stats = await broker.stats(queue)
    assert (stats.depth, stats.in_flight) == (0, 1)
    await busy.ack()
    assert (await broker.stats(queue)).in_flight == 0
    await consumer.close()


async def test_events_use_pub_sub_with_nats_style_wildcards(broker: RedisBroker):
    prefix = f"t{uuid.uuid4().hex[:8]}"
    exact: list[bytes] = []
    wild: list[bytes] = []
    stop_exact = await broker.subscribe_events(f"{prefix}.job.started", exact.append)
    stop_wild = await broker.subscribe_events(f"{prefix}.>", wild.append)

    await broker.publish_event(f"{prefix}.job.started", b"a")
    await broker.publish_event(f"{prefix}.job.done", b"b")

    await eventually(lambda: len(wild) == 2 and len(exact) == 1, timeout=5)
    assert exact == [b"a"] and sorted(wild) == [b"a", b"b"]
    await stop_exact()
    await stop_wild()


async def test_wait_replicas_on_one_server_follows_each_publish(
    redis_url: str, raw: aioredis.Redis, caplog: pytest.LogCaptureFixture
):
    """``?wait_replicas=1`` also works on one server with replicas; this one has none, so the
    publishes still land, and the missing replica is warned about once, not waited for again."""
    url = redis_url + ("&" if "?" in redis_url else "?") + "wait_replicas=1&wait_timeout=0.2"
    broker = RedisBroker(url)
    await broker.connect()
    name = f"t_{uuid.uuid4().hex[:12]}"
    try:
        with caplog.at_level("WARNING", logger="orquestrador.brokers.redis.cluster"):
            await broker.publish(name, b"one", message_id="m-1")
            await broker.publish_many(name, [(b"two", "m-2"), (b"three", None)])
        assert await raw.xlen(stream_key(name)) == 3, "single-server key names, unchanged"
        warned = [r.getMessage() for r in caplog.records]
        assert len(warned) == 1 and "confirmed by 0 of 1 replicas" in warned[0], warned
    finally:
        await broker.delete(name)
        await broker.close()
