"""TLS on every broker: ``tls://``, ``rediss://``, ``amqps://`` and ``bullmqs://`` against
throwaway servers that use a CA generated for this session (tests/certs.py), with CA/cert/key
paths from the URL (``?tls_ca=``) or the environment (``ORQ_TLS_CA`` ...).

A job goes the whole way (orchestrator, worker, result) over TLS; a client that does not trust
the server's CA, or that lacks a client cert the server requires, is refused with a message
saying which setting to fix; bad paths are ConfigErrors naming the setting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from orquestrador.brokers import connect, create_broker
from orquestrador.errors import BrokerUnavailable, ConfigError
from tests.roundtrip import worker_and_orchestrator
from tests.servers import NatsServer, RabbitServer, RedisServer, TlsFiles


def with_params(url: str, **params: Path) -> str:
    query = "&".join(f"{k}={quote(str(v))}" for k, v in params.items())
    return f"{url}{'&' if '?' in url else '?'}{query}"


@pytest.fixture
def nats_tls(tmp_path: Path, tls_files: TlsFiles) -> Iterator[NatsServer]:
    with NatsServer(tmp_path / "nats", tls=tls_files) as server:
        yield server


@pytest.fixture
def redis_tls(tmp_path: Path, tls_files: TlsFiles) -> Iterator[RedisServer]:
    with RedisServer(tmp_path / "redis", tls=tls_files) as server:
        yield server


@pytest.fixture(params=["nats", "redis", "rabbitmq", "bullmq"])
def tls_url(request: pytest.FixtureRequest) -> str:
    """A TLS URL with no CA configured yet, on a throwaway server of each broker."""
    if request.param == "nats":
        return request.getfixturevalue("nats_tls").url
    if request.param == "redis":
        return request.getfixturevalue("redis_tls").url
    if request.param == "bullmq":
        return str(request.getfixturevalue("redis_tls").url).replace("rediss://", "bullmqs://", 1)
    server: RabbitServer = request.getfixturevalue("rabbit_server")
    return server.tls_url


async def round_trip(url: str) -> dict:
    async with worker_and_orchestrator(url) as (orq, nome):
        job = await orq.iniciar("iniciar_coleta", nome, {"a": 20, "b": 22})
        row = await orq.esperar(job.message_id, 60)
        assert row is not None, "no result over TLS"
        return row.resultado


async def test_a_job_round_trips_over_tls_with_the_ca_from_the_environment(
    tls_url: str, tls_files: TlsFiles, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("ORQ_TLS_CA", str(tls_files.ca))
    assert await round_trip(tls_url) == {"soma": 42}


async def test_a_job_round_trips_with_ca_and_client_cert_from_url_parameters(
    tls_url: str, tls_files: TlsFiles
):
    url = with_params(
        tls_url, tls_ca=tls_files.ca, tls_cert=tls_files.client_cert, tls_key=tls_files.client_key
    )
    assert await round_trip(url) == {"soma": 42}


async def test_a_server_whose_ca_is_not_trusted_is_refused_saying_what_to_set(tls_url: str):
    with pytest.raises(BrokerUnavailable) as caught:
        await asyncio.wait_for(connect(tls_url), 60)
    message = str(caught.value)
    assert "not trusted" in message and "ORQ_TLS_CA" in message and "tls_ca" in message, message


async def test_a_server_requiring_a_client_cert_says_which_settings_provide_it(
    tmp_path: Path, tls_files: TlsFiles, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("ORQ_TLS_CA", str(tls_files.ca))
    with NatsServer(tmp_path / "nats", tls=tls_files, verify_clients=True) as server:
        with pytest.raises(BrokerUnavailable) as caught:
            await asyncio.wait_for(connect(server.url), 60)
        assert "ORQ_TLS_CERT" in str(caught.value) and "ORQ_TLS_KEY" in str(caught.value)

        monkeypatch.setenv("ORQ_TLS_CERT", str(tls_files.client_cert))
        monkeypatch.setenv("ORQ_TLS_KEY", str(tls_files.client_key))
        broker = await connect(server.url)
        await broker.declare("t_tls")
        await broker.publish("t_tls", b"ok")
        assert (await broker.stats("t_tls")).depth == 1
        await broker.close()


@pytest.mark.parametrize("scheme", ["tls", "rediss", "amqps", "bullmqs"])
async def test_a_missing_file_is_a_config_error_naming_the_setting(
    scheme: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("ORQ_TLS_CA", str(tmp_path / "nowhere" / "ca.pem"))
    with pytest.raises(ConfigError, match=r"ORQ_TLS_CA points to .*not a readable file"):
        broker = create_broker(f"{scheme}://user:hunter2@127.0.0.1:1")
        await broker.connect()


@pytest.mark.parametrize("scheme", ["tls", "rediss", "amqps", "bullmqs"])
async def test_bad_files_are_config_errors_naming_the_setting_not_the_secret(
    scheme: str, tmp_path: Path, tls_files: TlsFiles, monkeypatch: pytest.MonkeyPatch
):
    secret_key = tmp_path / "broken.key"
    secret_key.write_text(
        "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END PRIVATE KEY-----\n"
    )
    url = with_params(f"{scheme}://127.0.0.1:1", tls_cert=tls_files.client_cert, tls_key=secret_key)
    with pytest.raises(ConfigError) as caught:
        broker = create_broker(url)
        await broker.connect()
    message = str(caught.value)
    assert "tls_key in the broker URL" in message and "c2VjcmV0" not in message, message

    monkeypatch.setenv("ORQ_TLS_KEY", str(tls_files.client_key))  # a key without a certificate
    with pytest.raises(ConfigError, match=r"ORQ_TLS_KEY is set without a client certificate.*ORQ_TLS_CERT"):
        broker = create_broker(f"{scheme}://127.0.0.1:1")
        await broker.connect()


def test_tls_parameters_on_a_plain_scheme_are_a_config_error(tls_files: TlsFiles):
    with pytest.raises(ConfigError, match="need a TLS scheme"):
        create_broker(with_params("redis://127.0.0.1:6379/0", tls_ca=tls_files.ca))


async def test_a_plain_nats_url_to_a_tls_server_says_to_use_tls(nats_tls: NatsServer):
    with pytest.raises(BrokerUnavailable, match="use a tls:// URL"):
        await asyncio.wait_for(connect(f"nats://127.0.0.1:{nats_tls.port}"), 60)


def test_an_encrypted_client_key_is_a_config_error_not_a_password_prompt(tmp_path: Path, tls_files: TlsFiles):
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(tls_files.client_key.read_bytes(), None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    url = with_params("amqps://127.0.0.1:1/%2F", tls_cert=tls_files.client_cert, tls_key=encrypted)
    with pytest.raises(ConfigError, match="unencrypted private key"):
        create_broker(url)
