"""Session fixtures: one server per broker for the whole test run, started on first use.

Each ``<broker>_url`` fixture answers ``ORQ_TEST_<BROKER>_URL`` when it is set (an existing
server; it must answer), and otherwise starts a throwaway server of this package on free
loopback ports with its data under pytest's temporary directory, stopped when the session ends.
Nothing on the machine's usual ports (4222, 5672, 6379, 9092, 5000) is touched.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import pytest

from orquestrador.brokers import embedded
from orquestrador.errors import EmbeddedServerError
from tests.certs import TlsFiles, make_tls_files
from tests.servers.kafka_node import KafkaServer
from tests.servers.process import port_open, unreachable
from tests.servers.rabbitmq_node import RabbitServer
from tests.servers.redis_cluster import RedisCluster
from tests.servers.redis_server import RedisServer
from tests.servers.sqs_server import TEST_ENVIRONMENT, SqsServer


def reachable(url: str) -> bool:
    """Whether the first host of ``url`` accepts TCP (``kafka://h1:9092,h2:9092`` too; for
    ``sqs://`` the ``endpoint_url`` it names, and a URL without one, real AWS, is taken as is)."""
    parts = urlsplit(url)
    if parts.scheme == "sqs":
        endpoint = dict(parse_qsl(parts.query)).get("endpoint_url")
        return endpoint is None or reachable(endpoint)
    netloc = parts.netloc.rpartition("@")[2].split(",")[0]
    host, _, port = netloc.rpartition(":")
    if not port.isdigit():
        return False
    return port_open(int(port), host.strip("[]") or "127.0.0.1")


def configured(variable: str) -> str | None:
    """``$variable`` if set; a configured server that does not answer fails (or skips) the test."""
    url = os.environ.get(variable)
    if url and not reachable(url):
        where = urlsplit(url).netloc.rpartition("@")[2]  # never the credentials
        unreachable(f"{variable} points at a server that does not answer ({where})")
    return url or None


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A throwaway CA with a server cert for 127.0.0.1/localhost and a client cert."""
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def rabbit_server(tmp_path_factory: pytest.TempPathFactory, tls_files: TlsFiles) -> Iterator[RabbitServer]:
    """The session's RabbitMQ node (AMQP on ``url``, TLS on ``tls_url``).

    Restart and auth tests may ``restart()`` it or add users; they must not leave it stopped.
    """
    server = RabbitServer(tmp_path_factory.mktemp("rabbit"), tls=tls_files)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def rabbitmq_url(request: pytest.FixtureRequest) -> str:
    """``ORQ_TEST_RABBITMQ_URL``, or the session's own RabbitMQ node."""
    url = configured("ORQ_TEST_RABBITMQ_URL")
    if url:
        return url
    server: RabbitServer = request.getfixturevalue("rabbit_server")
    return server.url


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``ORQ_TEST_REDIS_URL``, or a redis-server for this session (no persistence: it is never
    restarted; restart tests start their own durable one)."""
    url = configured("ORQ_TEST_REDIS_URL")
    if url:
        yield url
        return
    with RedisServer(tmp_path_factory.mktemp("redis"), durable=False) as server:
        yield server.url


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``ORQ_TEST_REDIS_CLUSTER_URL``, or a Redis Cluster (three masters, one replica each) for
    this session; tests that kill a node start their own :class:`RedisCluster`."""
    url = configured("ORQ_TEST_REDIS_CLUSTER_URL")
    if url:
        yield url
        return
    cluster = RedisCluster(tmp_path_factory.mktemp("redis-cluster"))
    cluster.start()
    try:
        yield cluster.url
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def bullmq_url(request: pytest.FixtureRequest) -> str:
    """``ORQ_TEST_BULLMQ_URL``, or BullMQ on the session's Redis (database 1, so its keys never
    meet the Redis adapter's)."""
    url = configured("ORQ_TEST_BULLMQ_URL")
    if url:
        return url
    parts = urlsplit(str(request.getfixturevalue("redis_url")))
    scheme = "bullmqs" if parts.scheme == "rediss" else "bullmq"
    return urlunsplit(parts._replace(scheme=scheme, path="/1"))


@pytest.fixture(scope="session")
def kafka_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``ORQ_TEST_KAFKA_URL`` (``kafka://host:port``), or a one-node KRaft Kafka for this session."""
    url = configured("ORQ_TEST_KAFKA_URL")
    if url:
        yield url
        return
    with KafkaServer(tmp_path_factory.mktemp("kafka")) as server:
        yield server.url


@pytest.fixture(scope="session")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``ORQ_TEST_NATS_URL``, or the embedded nats-server (as users get it) for this session."""
    url = configured("ORQ_TEST_NATS_URL")
    if url:
        yield url
        return
    home = tmp_path_factory.mktemp("nats-home")
    try:
        server = embedded.ensure_server(home)
    except EmbeddedServerError as exc:
        unreachable(f"the embedded nats-server did not start ({exc})")
    yield server.url
    embedded.stop(home)


@pytest.fixture(scope="session")
def sqs_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``ORQ_TEST_SQS_URL`` (``sqs://REGION?endpoint_url=…``; credentials from the AWS chain), or
    moto in server mode for this session, with dummy AWS credentials in this process's
    environment (so the worker processes the tests start inherit them) for the session only."""
    url = configured("ORQ_TEST_SQS_URL")
    if url:
        yield url
        return
    saved = {name: os.environ.get(name) for name in TEST_ENVIRONMENT}
    os.environ.update(TEST_ENVIRONMENT)
    try:
        with SqsServer(tmp_path_factory.mktemp("sqs")) as server:
            yield server.url
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
