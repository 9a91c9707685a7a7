"""``orq demo --broker sqs://…`` runs the demo through SQS (moto in the tests) with real workers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from orquestrador.brokers import connect
from tests.conftest import broker_url_for
from tests.test_cli import orq

pytestmark = pytest.mark.sqs


def test_demo_runs_on_sqs(request: pytest.FixtureRequest, tmp_path: Path):
    url = broker_url_for("sqs", request)
    result = orq("demo", "--jobs", "6", "--broker", url, env={"ORQ_HOME": str(tmp_path / ".orquestrador")})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6/6 coletas ok" in result.stdout
    assert asyncio.run(_depth(url, "escavador_http")) == 0, "every job was acked"


async def _depth(url: str, queue: str) -> int:
    broker = await connect(url)
    try:
        return (await broker.stats(queue)).depth
    finally:
        await broker.close()
