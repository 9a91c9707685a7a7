"""Shared fixtures: real brokers for broker tests, a fresh state directory for every test.

Broker URLs come from ``ORQ_TEST_NATS_URL``, ``ORQ_TEST_REDIS_URL`` and
``ORQ_TEST_RABBITMQ_URL``; NATS defaults to an embedded nats-server started for the test
session in its own directory, Redis and RabbitMQ to the local servers. A broker that cannot be
reached skips its tests on a laptop, and fails them under ``CI=true``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from orquestrador.brokers import Broker, connect, embedded
from tests.servers import rabbit_server, tls_files  # noqa: F401 - session fixtures shared by all modules

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

DEFAULT_URLS = {
    "redis": os.environ.get("ORQ_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
    "rabbitmq": os.environ.get("ORQ_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F"),
}


def unreachable(what: str) -> None:
    message = f"{what} is not reachable"
    if IN_CI:
        pytest.fail(message + " (CI=true: broker tests must not be skipped)")
    pytest.skip(message)


def _reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), 2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real JetStream server: ORQ_TEST_NATS_URL, or an embedded one for this session."""
    configured = os.environ.get("ORQ_TEST_NATS_URL")
    if configured:
        if not _reachable(configured):
            unreachable(f"NATS at {configured}")
        yield configured
        return
    home = tmp_path_factory.mktemp("nats-home")
    try:
        server = embedded.ensure_server(home)
    except Exception as exc:
        unreachable(f"embedded nats-server ({exc})")
    yield server.url
    embedded.stop(home)


def broker_url_for(name: str, request: pytest.FixtureRequest) -> str:
    if name == "memory":
        return f"memory://{uuid.uuid4().hex}"
    if name == "nats":
        return request.getfixturevalue("nats_url")
    url = DEFAULT_URLS[name]
    if not _reachable(url):
        unreachable(f"{name} at {url}")
    return url


BROKERS = [
    pytest.param("memory", id="memory"),
    pytest.param("nats", id="nats", marks=pytest.mark.nats),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
    pytest.param("rabbitmq", id="rabbitmq", marks=pytest.mark.rabbitmq),
]


def adapter_available(name: str) -> bool:
    module = {"redis": "redis", "rabbitmq": "rabbitmq"}.get(name)
    if module is None:
        return True
    return (Path(__file__).parent.parent / "orquestrador" / "brokers" / f"{module}.py").exists()


@pytest.fixture(params=BROKERS)
def broker_url(request: pytest.FixtureRequest) -> str:
    if not adapter_available(request.param):
        pytest.skip(f"the {request.param} adapter has not landed yet")
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
