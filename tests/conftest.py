"""Shared fixtures: real brokers for broker tests, a fresh state directory for every test.

Each broker is a session fixture of :mod:`tests.servers.fixtures`: ``ORQ_TEST_NATS_URL``,
``ORQ_TEST_REDIS_URL``, ``ORQ_TEST_RABBITMQ_URL``, ``ORQ_TEST_KAFKA_URL`` and
``ORQ_TEST_SQS_URL`` (and ``ORQ_TEST_REDIS_CLUSTER_URL`` for the cluster suite) point the suite
at existing servers; without them the suite starts its own on free loopback ports (the embedded
nats-server, a redis-server, a RabbitMQ node, a KRaft Kafka, moto for SQS) and stops them at the
end; BullMQ uses the session's Redis (``ORQ_TEST_BULLMQ_URL`` for another). A broker that can be
neither reached nor started skips its tests on a laptop, and fails them under ``CI=true``, with
one line saying what to install.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from orquestrador.brokers import Broker, Capabilities, connect, registry
from tests.servers import IN_CI, unreachable  # noqa: F401 - re-exported for older imports
from tests.servers.fixtures import (  # noqa: F401 - session fixtures shared by all modules
    bullmq_url,
    kafka_url,
    nats_url,
    rabbit_server,
    rabbitmq_url,
    redis_cluster_url,
    redis_url,
    sqs_url,
    tls_files,
)

# The session fixture that starts a server for each built-in adapter, by test name (the adapter
# class's scheme, but "rabbitmq" for amqp). Any other registered adapter (a third-party or test
# package) is reached through ORQ_TEST_BROKER_<NAME>, or, when it lives inside the process
# (not ``capabilities.cross_process``), through ``<scheme>://<unique name>``.
SERVER_FIXTURES = {
    "nats": "nats_url", "redis": "redis_url", "rabbitmq": "rabbitmq_url", "bullmq": "bullmq_url",
    "sqs": "sqs_url", "kafka": "kafka_url",
}  # fmt: skip
TEST_NAMES = {"amqp": "rabbitmq"}
_ORDER = ("memory", "nats", "redis", "rabbitmq", "bullmq", "sqs", "kafka")


def _registered() -> dict[str, type[Broker]]:
    """Every registered adapter class once, by test name, built-ins first."""
    found: dict[str, type[Broker]] = {}
    for scheme in registry.known_schemes():
        cls = registry.adapter_for(scheme)
        found.setdefault(TEST_NAMES.get(cls.scheme, cls.scheme), cls)
    order = {name: i for i, name in enumerate(_ORDER)}
    return dict(sorted(found.items(), key=lambda item: (order.get(item[0], len(order)), item[0])))


ADAPTERS = _registered()


def capabilities_of(name: str) -> Capabilities:
    return variant_capabilities(name) if name in VARIANTS else ADAPTERS[name].capabilities


def brokers_where(predicate: Callable[[Capabilities], bool] = lambda _caps: True) -> list[Any]:
    """One pytest param per registered adapter whose capabilities satisfy ``predicate``."""
    return [
        pytest.param(name, id=name, marks=[getattr(pytest.mark, name)] if name in BROKER_MARKERS else [])
        for name, cls in ADAPTERS.items()
        if predicate(cls.capabilities)
    ]


# Settings of a built-in adapter that change what it declares: the contract suite (the
# ``broker_url`` fixture) runs them as brokers of their own, on the same session server.
VARIANTS = {"rabbitmq_quorum": ("rabbitmq", "queue_type=quorum")}


def variant_capabilities(name: str) -> Capabilities:
    base, query = VARIANTS[name]
    cls = ADAPTERS[base]
    return cls(f"{cls.scheme}://127.0.0.1/?{query}").capabilities  # built, never connected


def broker_url_for(name: str, request: pytest.FixtureRequest) -> str:
    """The URL of broker ``name`` for this test: the session's server (started on first use)."""
    if name in VARIANTS:
        base, query = VARIANTS[name]
        url = broker_url_for(base, request)
        return f"{url}{'&' if '?' in url else '?'}{query}"
    if name in SERVER_FIXTURES:
        return str(request.getfixturevalue(SERVER_FIXTURES[name]))
    if url := os.environ.get(f"ORQ_TEST_BROKER_{name.upper()}"):
        return url
    cls = ADAPTERS[name]
    if not cls.capabilities.cross_process:
        return f"{cls.scheme}://{uuid.uuid4().hex}"
    pytest.fail(f"no server for the {name} adapter: set ORQ_TEST_BROKER_{name.upper()} to its URL")


BROKER_MARKERS = ("nats", "redis", "rabbitmq", "kafka", "bullmq", "sqs")
BROKERS = brokers_where() + [
    pytest.param(name, id=name, marks=[getattr(pytest.mark, base)])
    for name, (base, _query) in VARIANTS.items()
    if base in ADAPTERS
]


@pytest.fixture(params=BROKERS)
def broker_url(request: pytest.FixtureRequest) -> str:
    return broker_url_for(request.param, request)


@pytest.fixture
async def broker(broker_url: str) -> AsyncIterator[Broker]:
    b = await connect(broker_url)
    try:
        yield b
    finally:
        await b.close()


@pytest.fixture
def queue_name() -> str:
    """A queue name no other test run uses."""
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def queue(broker: Broker, queue_name: str) -> AsyncIterator[str]:
    """A declared, unique queue that is deleted afterwards (shared servers stay as found)."""
    await broker.declare(queue_name)
    yield queue_name
    await broker.delete(queue_name)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own .orquestrador/ so stores and state files never mix."""
    monkeypatch.setenv("ORQ_HOME", str(tmp_path / ".orquestrador"))
    monkeypatch.delenv("ORQ_BROKER_URL", raising=False)


async def eventually(check, timeout: float = 10.0, interval: float = 0.05):  # type: ignore[no-untyped-def]
    """Poll an async or sync ``check`` until it returns a truthy value."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """Under CI=true a broker test never skips, whatever skipped it: the skip becomes a failure."""
    report = yield
    broker_test = any(item.get_closest_marker(name) for name in BROKER_MARKERS)
    if IN_CI and broker_test and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"CI=true: a broker test may not skip ({reason})"
    return report
