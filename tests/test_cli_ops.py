"""The operations commands as an operator runs them: real ``orq`` processes on real brokers."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orquestrador.brokers import connect
from orquestrador.brokers.base import dlq_of
from orquestrador.envelope import Envelope, Erro
from orquestrador.settings import home
from orquestrador.store import Store
from tests.conftest import broker_url_for
from tests.workers import ROOT

REAL_BROKERS = [
    pytest.param("nats", id="nats", marks=pytest.mark.nats),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
    pytest.param("rabbitmq", id="rabbitmq", marks=pytest.mark.rabbitmq),
    pytest.param("bullmq", id="bullmq", marks=pytest.mark.bullmq),
]


def orq(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("orq")
    command = [exe] if exe else [sys.executable, "-m", "orquestrador.cli"]
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=timeout,
        env=dict(os.environ), cwd=ROOT, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def envelope(message_id: str) -> bytes:
    return json.dumps({
        "correlation_id": f"c-{message_id}", "tipo_evento": "iniciar_coleta", "payload": {"n": 1},
        "timestamp": datetime.now(UTC).isoformat(), "message_id": message_id, "alvo": "ops_test",
    }).encode()  # fmt: skip


async def _depths(url: str, queue: str) -> tuple[int, int, int]:
    broker = await connect(url)
    try:
        s = await broker.stats(queue)
        return s.depth, s.in_flight, s.dead_letters
    finally:
        await broker.close()


def depths(url: str, queue: str, expected: tuple[int, int, int] | None = None) -> tuple[int, int, int]:
    """(depth, in flight, dead letters), polled briefly until ``expected`` when given."""
    deadline = time.monotonic() + 10
    while True:
        got = asyncio.run(_depths(url, queue))
        if expected is None or got == expected or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


def waiting(url: str, queue: str) -> int:
    """Messages still in the queue, delivered or not."""
    depth, in_flight, _ = depths(url, queue)
    return depth + in_flight


async def _setup(url: str, queue: str, ids: list[str], dead: int, reason: str) -> None:
    """Publish ``ids`` in order, then dead-letter the first ``dead`` of them."""
    broker = await connect(url)
    try:
        await broker.declare(queue)
        for mid in ids:
            await broker.publish(queue, envelope(mid), message_id=mid)
        if dead:
            consumer = await broker.consume(queue, visibility_timeout=30, prefetch=dead)
            taken = []
            while len(taken) < dead:
                taken += await consumer.fetch(dead - len(taken), timeout=5)
            for d in taken:
                await d.dead_letter(reason, error_type="ValueError")
            await consumer.close()
    finally:
        await broker.close()


async def _delete(url: str, queue: str) -> None:
    broker = await connect(url)
    try:
        await broker.delete(queue)
    finally:
        await broker.close()


@pytest.mark.parametrize("name", REAL_BROKERS)
def test_operations_on_a_real_broker(name: str, request: pytest.FixtureRequest):
    url = broker_url_for(name, request)
    queue = f"t_ops_{uuid.uuid4().hex[:10]}"
    ids = [f"m{i}-{uuid.uuid4().hex[:6]}" for i in range(5)]
    reason = f"boom {uuid.uuid4().hex[:6]}"
    asyncio.run(_setup(url, queue, ids, 2, reason))
    try:
        assert depths(url, queue, (3, 0, 2)) == (3, 0, 2)
        dead_ids = set(ids[:2])

        listed = json.loads(ok(orq("queues", "--broker", url, "--json")).stdout)
        mine = [row for row in listed if row["queue"] == queue]
        assert len(mine) == 1, listed
        assert (mine[0]["depth"], mine[0]["dead_letters"], mine[0]["dlq"]) == (3, 2, dlq_of(queue))
        assert not any(row["queue"].endswith(".dlq") for row in listed), "dlqs are grouped with their queue"
        # Tables, errors and the all-queues view do not depend on the broker: check them once.
        once = name == "redis"
        if once:
            assert queue in ok(orq("queues", "--broker", url)).stdout

        peek = orq("queues", "peek", queue, "--limit", "10", "--broker", url, "--json")
        peeked = json.loads(ok(peek).stdout)
        assert {p["message_id"] for p in peeked} == set(ids[2:])
        assert {p["tipo_evento"] for p in peeked} == {"iniciar_coleta"}
        assert depths(url, queue) == (3, 0, 2), "peek leaves the queue as it was"

        if once:
            unknown = orq("queues", "peek", f"{queue}_nope", "--broker", url)
            assert unknown.returncode == 2 and "existing queues" in unknown.stderr and queue in unknown.stderr

        dead = json.loads(ok(orq("dlq", "list", queue, "--broker", url, "--json")).stdout)
        assert {d["message_id"] for d in dead} == dead_ids
        assert {(d["reason"], d["error_type"], d["queue"]) for d in dead} == {(reason, "ValueError", queue)}
        assert all(isinstance(d["attempts"], int) and d["attempts"] >= 1 for d in dead)
        if once:
            everywhere = json.loads(ok(orq("dlq", "list", "--broker", url, "--json")).stdout)
            assert {d["message_id"] for d in everywhere if d["queue"] == queue} == dead_ids
            assert reason in ok(orq("dlq", "list", queue, "--broker", url)).stdout

        chosen, other = ids[1], ids[0]
        replayed = ok(orq("dlq", "replay", queue, "--id", chosen, "--broker", url))
        assert "replayed 1" in replayed.stdout
        assert depths(url, queue, (4, 0, 1)) == (4, 0, 1)
        left = json.loads(ok(orq("dlq", "list", queue, "--broker", url, "--json")).stdout)
        assert [d["message_id"] for d in left] == [other], "the other dead letter stays"
        missing = orq("dlq", "replay", queue, "--id", "no-such-id", "--broker", url)
        assert missing.returncode == 2 and "no dead letter" in missing.stderr
        assert depths(url, queue, (4, 0, 1)) == (4, 0, 1), "a failed --id search loses nothing"

        assert "replayed 1" in ok(orq("dlq", "replay", queue, "--broker", url)).stdout
        assert depths(url, queue, (5, 0, 0)) == (5, 0, 0)

        consumed = json.loads(ok(orq("consume", queue, "--limit", "2", "--broker", url, "--json")).stdout)
        assert len(consumed) == 2 and all(c["message_id"] in ids for c in consumed)
        assert depths(url, queue, (3, 0, 0)) == (3, 0, 0)
        refused = orq("queues", "purge", queue, "--broker", url)
        assert refused.returncode == 2 and "--yes" in refused.stderr
        assert depths(url, queue) == (3, 0, 0)
        purged = ok(orq("queues", "purge", queue, "--yes", "--broker", url))
        assert "dropped 3" in purged.stdout
        assert depths(url, queue, (0, 0, 0)) == (0, 0, 0)

        asyncio.run(_setup(url, queue, ["last"], 0, reason))
        again = orq("consume", queue, "--limit", "1", "--no-ack", "--broker", url, "--json")
        assert [c["message_id"] for c in json.loads(ok(again).stdout)] == ["last"]
        # --no-ack gives it back; NATS and Redis count a nacked message as in flight until it is
        # fetched again, so look at it with peek.
        assert waiting(url, queue) == 1, "--no-ack gives the message back"
        still = json.loads(ok(orq("queues", "peek", queue, "-b", url, "--json")).stdout)
        assert [p["message_id"] for p in still] == ["last"]
    finally:
        asyncio.run(_delete(url, queue))


def _fill_store(path: Path) -> None:
    store = Store(path)
    start = datetime.now(UTC) - timedelta(minutes=5)
    sent, results = [], []
    for i in range(10):
        at = start + timedelta(seconds=i)
        job = Envelope(correlation_id=f"c{i}", tipo_evento="iniciar_coleta", payload={}, timestamp=at,
                       message_id=f"job{i}", alvo="rapido" if i < 8 else "lento")  # fmt: skip
        sent.append(job)
        if i == 9:
            continue  # still queued
        status = "erro" if i in (6, 7) else "ok"
        erro = None
        if status == "erro":
            extra = {"fila_dlq": "escavador_rapido.dlq"} if i == 7 else {}
            erro = Erro(tipo="ValueError", mensagem="no", **extra)
        results.append(Envelope(
            correlation_id=f"c{i}", tipo_evento="resultado_coleta", payload={}, causation_id=f"job{i}",
            timestamp=at + timedelta(seconds=(i + 1) / 10), message_id=f"r{i}", alvo=job.alvo,
            status=status, erro=erro,
        ))  # fmt: skip
    store.record_sent(sent, "escavador_x")
    store.record_results(results)
    store.close()


def test_stats_per_alvo_from_the_store():
    missing = orq("stats")
    assert missing.returncode == 2 and "no store" in missing.stderr
    _fill_store(home() / "orquestrador.db")
    rows = {r["alvo"]: r for r in json.loads(ok(orq("stats", "--json")).stdout)}
    rapido, lento = rows["rapido"], rows["lento"]
    assert (rapido["jobs"], rapido["ok"], rapido["erro"], rapido["dead_lettered"]) == (8, 6, 1, 1)
    assert (lento["jobs"], lento["ok"], lento["pending"]) == (2, 1, 1)
    assert rapido["p50"] == pytest.approx(0.4) and rapido["p99"] == pytest.approx(0.8)
    assert rapido["throughput"] == pytest.approx(8 / 7.8)
    table = ok(orq("stats")).stdout
    assert "rapido" in table and "p95" in table


def test_stats_and_metricas_give_the_same_percentiles():
    """Eight latencies (0.1 s … 0.8 s): a p95 interpolated between two jobs would be 0.765 s."""
    from orquestrador import Orquestrador

    _fill_store(home() / "orquestrador.db")
    cli = {r["alvo"]: r for r in json.loads(ok(orq("stats", "--json")).stdout)}
    with Orquestrador("memory://", home=home()) as notebook:
        metricas = notebook.metricas().set_index("alvo")
    assert cli["rapido"]["p95"] == pytest.approx(0.8)
    for alvo, row in cli.items():
        for p in ("p50", "p95", "p99"):
            assert metricas.loc[alvo, f"{p}_s"] == pytest.approx(round(row[p], 3)), (alvo, p)


def test_every_operations_command_has_help():
    """In-process (help needs no broker): one process per command would cost a second each."""
    from typer.testing import CliRunner

    from orquestrador.cli import app

    commands = [["queues"], ["queues", "peek"], ["queues", "purge"], ["dlq"], ["dlq", "list"],
                ["dlq", "replay"], ["consume"], ["stats"]]  # fmt: skip
    for args in commands:
        result = CliRunner().invoke(app, [*args, "--help"])
        assert result.exit_code == 0, (args, result.output)
        assert "Usage" in result.output


def test_the_worker_path_does_not_load_pandas():
    code = "import sys, orquestrador.cli, orquestrador.cli.stats; print('pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.strip() == "False", out.stderr
