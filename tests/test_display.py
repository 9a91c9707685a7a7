"""Reading hostile content never crashes a command or a widget (item 4 of #13): dead letters and
messages nested thousands deep, megabytes long or full of terminal escapes are shown truncated
and escaped, and the listing carries on."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from typer.testing import CliRunner

from orquestrador import envelope as wire
from orquestrador.brokers import connect
from orquestrador.brokers.base import DLQ_REASON
from orquestrador.cli import app
from orquestrador.display import text
from orquestrador.notebook._live import esc
from orquestrador.store import Store
from tests.conftest import broker_url_for

DEEP = b"[" * 100_000 + b"]" * 100_000
ANSI = "\x1b]0;pwned\x07\x1b[2J<script>alert(1)</script>"


def hostile_dead_letters(url: str, queue: str) -> None:
    async def put() -> None:
        broker = await connect(url)
        await broker.declare(queue)
        good = wire.encode(wire.nova("iniciar_coleta", {"i": 1}, alvo="x"))
        odd = json.dumps({"message_id": ANSI + "m" * 10_000, "alvo": {"n": {"n": [1] * 5000}}}).encode()
        for body in (DEEP, odd, good):
            await broker.publish(f"{queue}.dlq", body, headers={DLQ_REASON: ANSI + "r" * 5000})
        await broker.publish(queue, DEEP)
        await broker.close()

    asyncio.run(put())


def check(output: str, limit: int) -> None:
    assert "\x1b" not in output and "\x07" not in output
    assert len(output) < limit


@pytest.mark.parametrize("name", ["memory", pytest.param("redis", marks=pytest.mark.redis)])
def test_dlq_list_peek_and_consume_show_hostile_messages_truncated_and_escaped(
    name: str, request: pytest.FixtureRequest
):
    url = broker_url_for(name, request)
    queue = f"escavador_d{uuid.uuid4().hex[:8]}"
    hostile_dead_letters(url, queue)
    if name == "redis":  # broker-level fields too: a headers field nested past the recursion limit
        import redis

        from orquestrador.brokers.redis import stream_key

        redis.Redis.from_url(url).xadd(stream_key(f"{queue}.dlq"), {"b": b"x", "h": DEEP})
    runner = CliRunner()
    for args in (["dlq", "list", queue], ["dlq", "list"], ["queues", "peek", f"{queue}.dlq"]):
        shown = runner.invoke(app, [*args, "--broker", url])
        assert shown.exit_code == 0, shown.output
        check(shown.output, 60_000)
        listed = runner.invoke(app, [*args, "--broker", url, "--json"])
        assert listed.exit_code == 0, listed.output
        rows = [r for r in json.loads(listed.output) if r.get("queue", queue) == queue]
        assert len(rows) == (4 if name == "redis" else 3)
        assert any(r["alvo"] == "x" for r in rows), "the good one is listed beside them"
        assert all(len(r["reason"] or "") <= 2100 for r in rows)  # 2000, escapes widen it
    consumed = runner.invoke(app, ["consume", queue, "--broker", url, "--json"])
    assert consumed.exit_code == 0, consumed.output
    [row] = json.loads(consumed.output)
    assert isinstance(row["body"], str) and len(row["body"]) <= 4100


def test_widgets_and_trace_show_any_depth_escaped(tmp_path):
    deep: list = []
    for _ in range(5000):
        deep = [deep]
    assert len(esc(deep)) <= 300 * 6 and esc(ANSI) == esc(ANSI).replace("\x1b", "")
    assert "\x1b" not in text(ANSI) and len(text("x" * 10_000)) == 301

    store = Store(tmp_path / ".orquestrador" / "orquestrador.db")
    job = wire.nova("iniciar_coleta", {}, alvo="x")
    store.record_sent([job], "escavador_x")
    result = wire.Envelope(
        correlation_id=job.correlation_id, tipo_evento="resultado_coleta", payload={"t": ANSI * 1000},
        timestamp=wire.now(), message_id=wire.new_id(), causation_id=job.message_id, alvo=ANSI,
        status="erro", erro={"tipo": ANSI, "mensagem": ANSI * 1000}, worker=ANSI,
    )  # fmt: skip
    store.record_results([result])
    store.close()
    shown = CliRunner().invoke(app, ["trace", job.correlation_id])
    assert shown.exit_code == 0, shown.output
    check(shown.output, 20_000)
