"""Passwords and tokens in broker URLs never show: not in reprs, exception messages (nor their
tracebacks), log records, or CLI output (``orq broker status``), on every URL form: ``user:pass@``,
a NATS token (``nats://SECRET@host``), TLS schemes, ``?password=`` parameters.

Servers with auth are throwaway ones (tests/servers.py); restarting them makes the adapters log
their reconnects, which must mask the secret too.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest

from orquestrador.brokers import connect, create_broker
from orquestrador.errors import BrokerError, ConfigError
from orquestrador.settings import check_url, redact_url
from tests.servers import NatsServer, RabbitServer, RedisServer, free_port
from tests.test_cli import orq

SECRET = "S3cr3t-Pa55w0rd"
WRONG = "Wr0ng-Pa55w0rd"
Secured = NatsServer | RedisServer | RabbitServer


def url_forms(port: int) -> list[str]:
    return [
        f"nats://coletor:{SECRET}@127.0.0.1:{port}",
        f"nats://{SECRET}@127.0.0.1:{port}",
        f"nats://coletor:{SECRET}@127.0.0.1:{port},127.0.0.1:{port}?replicas=3",
        f"tls://{SECRET}@127.0.0.1:{port}",
        f"redis://worker:{SECRET}@127.0.0.1:{port}/0",
        f"rediss://:{SECRET}@127.0.0.1:{port}/0",
        f"amqp://guest:{SECRET}@127.0.0.1:{port}/%2F",
        f"amqps://guest:{SECRET}@127.0.0.1:{port}/%2F",
        f"bullmq://worker:{SECRET}@127.0.0.1:{port}/0",
        f"bullmqs://:{SECRET}@127.0.0.1:{port}/0",
        f"kafka://coletor:{SECRET}@127.0.0.1:{port}",
        f"kafkas://coletor:{SECRET}@127.0.0.1:{port},127.0.0.1:{port}?sasl_mechanism=SCRAM-SHA-512",
    ]


def assert_hidden(*texts: str, secrets: tuple[str, ...] = (SECRET, WRONG)) -> None:
    for text in texts:
        for secret in secrets:
            assert secret not in text, f"secret leaked in: {text}"


def everything_about(exc: BaseException) -> tuple[str, str, str]:
    return str(exc), repr(exc), "".join(traceback.format_exception(exc))


@pytest.mark.parametrize("url", url_forms(free_port()))
async def test_an_unreachable_broker_names_the_url_with_its_secret_masked(
    url: str, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    broker = create_broker(url)
    assert_hidden(repr(broker), str(broker))
    with pytest.raises(BrokerError) as caught:
        await asyncio.wait_for(broker.connect(), 60)
    assert_hidden(*everything_about(caught.value), caplog.text)
    assert redact_url(url) in str(caught.value)
    assert "***" in redact_url(url)


@pytest.mark.parametrize(
    "url",
    [
        f"nats://coletor:{SECRET}@127.0.0.1:notaport",
        f"nats://coletor:{SECRET}@127.0.0.1:4222,127.0.0.1:notaport",
        f"nats://coletor:{SECRET}@127.0.0.1:4222?replicas=7",
        f"http://coletor:{SECRET}@127.0.0.1:80",
        f"redis://:{SECRET}@127.0.0.1:6379/0?maxlen=-3",
        f"amqp://guest:{SECRET}@127.0.0.1:5672/%2F?no_such_option=1",
        f"redis://:{SECRET}@127.0.0.1:6379/0?tls_ca=/etc/ca.pem",
        f"redis://:{SECRET}@127.0.0.1:6379/0?no_such_option=1",
        f"kafka://coletor:{SECRET}@127.0.0.1:9092?partitions=0",
        f"kafka://coletor:{SECRET}@127.0.0.1:9092?sasl_mechanism=GSSAPI",
        f"kafka://coletor:{SECRET}@127.0.0.1:9092,127.0.0.1:x",
    ],
)
async def test_config_errors_for_urls_never_contain_the_secret(url: str):
    with pytest.raises(ConfigError) as caught:
        check_url(url)
        broker = create_broker(url)
        await broker.connect()
    assert_hidden(*everything_about(caught.value))


def test_a_cluster_url_lists_every_server_and_masks_their_shared_secret():
    url = f"nats://coletor:{SECRET}@127.0.0.1:4222,127.0.0.1:4223?replicas=3"
    assert redact_url(url) == "nats://coletor:***@127.0.0.1:4222,127.0.0.1:4223?replicas=3"
    broker = create_broker(url)
    assert broker.servers == [f"nats://coletor:{SECRET}@127.0.0.1:4222", f"nats://coletor:{SECRET}@127.0.0.1:4223"]
    assert broker.replicas == 3 and "replicas" not in broker.plain_url
    with pytest.raises(ConfigError, match=r"replicas=.* from 1 to 5"):
        create_broker(url.replace("replicas=3", "replicas=0"))


def test_secret_query_parameters_are_masked_too():
    redacted = redact_url(f"redis://127.0.0.1:6379/0?password={SECRET}&maxlen=10")
    assert SECRET not in redacted and "maxlen=10" in redacted and "password=***" in redacted
    assert redact_url("redis://127.0.0.1:6379/0?maxlen=10") == "redis://127.0.0.1:6379/0?maxlen=10"


@pytest.fixture(
    params=[
        pytest.param("nats", marks=pytest.mark.nats),
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("rabbitmq", marks=pytest.mark.rabbitmq),
    ]
)
def secured(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[NatsServer | RedisServer | RabbitServer, str, str]]:
    """(a throwaway server that requires SECRET, the right URL, a URL with WRONG)."""
    if request.param == "rabbitmq":
        rabbit: RabbitServer = request.getfixturevalue("rabbit_server")
        user = f"u{free_port()}"
        assert rabbit.ctl("add_user", user, SECRET).returncode == 0
        assert rabbit.ctl("set_permissions", "-p", "/", user, ".*", ".*", ".*").returncode == 0
        base = f"amqp://{user}:{{}}@127.0.0.1:{rabbit.port}/%2F"
        yield rabbit, base.format(SECRET), base.format(WRONG)
        rabbit.ctl("delete_user", user)
        return
    if request.param == "nats":
        server: NatsServer | RedisServer = NatsServer(tmp_path / "nats", token=SECRET)
        base = "nats://{}@127.0.0.1:%d"
    else:
        server = RedisServer(tmp_path / "redis", password=SECRET)
        base = "redis://:{}@127.0.0.1:%d/0"
    with server:
        yield server, (base % server.port).format(SECRET), (base % server.port).format(WRONG)


async def test_reconnect_logs_and_refused_logins_never_show_the_secret(
    secured: tuple[Secured, str, str], caplog: pytest.LogCaptureFixture
):
    server, right, wrong = secured
    caplog.set_level(logging.DEBUG)
    queue = f"t_secret_{free_port()}"
    broker = await connect(right)
    try:
        await broker.declare(queue)
        await asyncio.to_thread(server.restart)
        for _ in range(120):  # until the client has reconnected with the credentials of the URL
            try:
                await broker.publish(queue, b"after the restart")
                break
            except BrokerError as exc:
                assert_hidden(*everything_about(exc))
                await asyncio.sleep(0.5)
        assert (await broker.stats(queue)).depth == 1
        await broker.delete(queue)
    finally:
        await broker.close()
    assert_hidden(repr(broker), caplog.text)

    with pytest.raises(BrokerError) as caught:
        await asyncio.wait_for(connect(wrong), 60)
    assert_hidden(*everything_about(caught.value), caplog.text)
    assert redact_url(wrong) in str(caught.value)


def test_orq_broker_status_masks_the_configured_url(tmp_path: Path):
    with RedisServer(tmp_path / "redis", password=SECRET) as server:
        reachable = orq("broker", "status", "--broker", server.url)
        assert reachable.returncode == 0, reachable.stderr
        assert redact_url(server.url) in reachable.stdout and "reachable" in reachable.stdout
        assert_hidden(reachable.stdout, reachable.stderr)

        wrong = server.url.replace(SECRET, WRONG)
        refused = orq("broker", "status", env={"ORQ_BROKER_URL": wrong})
        assert refused.returncode == 2 and refused.stderr.startswith("error:")
        assert redact_url(wrong) in refused.stdout + refused.stderr
        assert_hidden(refused.stdout, refused.stderr)

    token_url = f"nats://{SECRET}@127.0.0.1:{free_port()}"
    down = orq("broker", "status", env={"ORQ_BROKER_URL": token_url})
    assert down.returncode == 2 and "nats://***@127.0.0.1" in down.stdout + down.stderr
    assert_hidden(down.stdout, down.stderr)
