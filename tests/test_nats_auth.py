"""NATS auth: user/password (``nats://user:pass@host``) and token (``nats://token@host``) against a
throwaway nats-server started with that auth; wrong credentials give one clear line that never
contains the secret (message, repr, log records).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from orquestrador.brokers import connect
from orquestrador.errors import BrokerUnavailable
from tests.roundtrip import worker_and_orchestrator
from tests.servers import NatsServer

pytestmark = pytest.mark.nats

PASSWORD = "pw-Hunter2-secret"
TOKEN = "tok-s3cr3t-value"


@pytest.fixture(params=["password", "token"])
def auth(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[NatsServer, str, str]]:
    """(server, URL with the right credentials, URL with wrong ones)."""
    if request.param == "password":
        server = NatsServer(tmp_path / "nats", user="coletor", password=PASSWORD)
        right, wrong = f"coletor:{PASSWORD}", "coletor:wrong-Secret-pw"
    else:
        server = NatsServer(tmp_path / "nats", token=TOKEN)
        right, wrong = TOKEN, "wrong-Token-secret"
    with server:
        yield server, f"nats://{right}@127.0.0.1:{server.port}", f"nats://{wrong}@127.0.0.1:{server.port}"


async def test_the_right_credentials_run_jobs(auth: tuple[NatsServer, str, str]):
    _, url, _ = auth
    async with worker_and_orchestrator(url) as (orq, nome):
        job = await orq.iniciar("iniciar_coleta", nome, {"a": 1, "b": 2})
        row = await orq.esperar(job.message_id, 30)
        assert row is not None and row.resultado == {"soma": 3}


async def test_wrong_or_missing_credentials_are_refused_without_the_secret(
    auth: tuple[NatsServer, str, str], caplog: pytest.LogCaptureFixture
):
    server, _, wrong = auth
    caplog.set_level(logging.DEBUG)
    for url in (wrong, server.url):
        with pytest.raises(BrokerUnavailable) as caught:
            await asyncio.wait_for(connect(url), 60)
        message = str(caught.value)
        assert "refused the credentials" in message and "in the URL" in message, message
        secrets = (PASSWORD, TOKEN, wrong.split("//")[1].split("@")[0].split(":")[-1])
        for text in (message, repr(caught.value), caplog.text):
            assert not any(secret in text for secret in secrets), text
        if url == wrong:  # says which server, credentials masked
            assert ("nats://coletor:***@" if ":" in wrong.split("@")[0][7:] else "nats://***@") in message
