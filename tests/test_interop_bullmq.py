"""BullMQ both ways with Node: Node's own BullMQ (and Bull Board) against our jobs, from npm.

Node BullMQ and Bull Board are pinned by tests/node/package-lock.json and installed by ``npm ci``
outside the repository (:mod:`tests.node`); Node.js 20 and npm must be on the machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orquestrador import Orquestrador, Worker, WorkerOptions
from orquestrador.brokers import connect
from orquestrador.brokers.base import DLQ_REASON
from orquestrador.envelope import DEFAULT_RESULTS_QUEUE
from orquestrador.operations import dead_letters, replay
from orquestrador.plugins import Plugin
from tests import node
from tests.conftest import eventually, unreachable
from tests.servers import free_port
from tests.test_cli_ops import _delete

pytestmark = pytest.mark.bullmq

ARTIFACTS = Path(__file__).parent / "node" / "artifacts"


@pytest.fixture(scope="session")
def node_modules() -> Path:
    if missing := node.missing_tools():
        unreachable(f"{' and '.join(missing)} for the Node interop tests (Node.js 20 and npm)")
    try:
        return node.node_modules()
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        unreachable(f"npm ci of tests/node failed ({exc}): is the npm registry reachable?")
        raise


def run_node(modules: Path, *args: str, timeout: float = 90) -> Any:
    """Run tests/node/interop.cjs; its one JSON line, parsed."""
    env = {**os.environ, "NODE_PATH": str(modules)}
    done = subprocess.run(
        ["node", str(node.SCRIPT), *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"node {args[0]} failed: {done.stderr[-3000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def start_node(modules: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "NODE_PATH": str(modules)}
    return subprocess.Popen(
        ["node", str(node.SCRIPT), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def dobro(payload: dict[str, Any]) -> dict[str, Any]:
    return {"dobro": payload["param"] * 2}


def sem_moeda(payload: dict[str, Any]) -> dict[str, Any]:
    raise ValueError(f"unknown currency {payload['moeda']!r}")


async def test_a_node_producers_job_is_answered_by_our_worker_and_node_gets_the_return_value(
    bullmq_url: str, node_modules: Path
):
    nome = f"node_{uuid.uuid4().hex[:8]}"
    correlation_id = str(uuid.uuid4())
    envelope = {  # the interface note's four fields, nothing of ours
        "correlation_id": correlation_id,
        "tipo_evento": "iniciar_coleta",
        "payload": {"param": 21},
        "timestamp": "2025-10-14T12:00:00Z",
    }
    broker = await connect(bullmq_url)
    worker = Worker(broker, [Plugin("escavador", nome, dobro, "tests")], WorkerOptions())
    task = asyncio.create_task(worker.run())
    try:
        redis = node.redis_of(bullmq_url)
        answer = await asyncio.to_thread(
            run_node, node_modules, "produce", redis, f"escavador_{nome}", json.dumps(envelope)
        )
        returned = answer["returnvalue"]  # what Node's job.waitUntilFinished() resolved with
        assert returned["tipo_evento"] == "resultado_coleta"
        assert (returned["correlation_id"], returned["status"]) == (correlation_id, "ok")
        assert returned["payload"] == {"dobro": 42}
        assert returned["causation_id"] is None or isinstance(returned["causation_id"], str)

        # The same result went to the results queue, where an orchestrator collects it.
        results = await broker.consume(DEFAULT_RESULTS_QUEUE, visibility_timeout=10)

        async def collected() -> bool:
            for delivery in await results.fetch(50, timeout=0.5):
                if json.loads(delivery.body).get("correlation_id") == correlation_id:
                    await delivery.ack()
                    return True
            return False

        await eventually(collected, timeout=20)
        await results.close()
    finally:
        worker.stop()
        await task
        await broker.delete(f"escavador_{nome}")
        await broker.close()


def test_our_orchestrators_job_is_processed_by_a_node_worker_and_recorded(
    bullmq_url: str, node_modules: Path
):
    nome = f"node_{uuid.uuid4().hex[:8]}"
    node_worker = start_node(node_modules, "work", node.redis_of(bullmq_url), f"escavador_{nome}", "1")
    orq = Orquestrador(bullmq_url, responder_para=f"resultados_{nome}")
    try:
        job = orq.iniciar_coleta(nome, {"param": 21})
        job.wait(60)
        assert (job.status, job.result) == ("ok", {"dobro": 42, "por": "node"})
        row = orq.resultados(alvo=nome).iloc[0]  # in the store, as any worker's result is
        assert row["status"] == "ok" and row["resultado.por"] == "node"
        out, err = node_worker.communicate(timeout=30)
        assert node_worker.returncode == 0, err[-2000:]
        assert json.loads(out.strip().splitlines()[-1])["answered"] == [job.message_id]  # job id = message_id
    finally:
        if node_worker.poll() is None:
            node_worker.kill()
            node_worker.communicate()
        orq.close()


@pytest.fixture
def failed_job(bullmq_url: str) -> Iterator[tuple[str, str, str]]:
    """A job of ours that failed past its attempts: (queue, its id, the reason we gave)."""
    nome = f"falha_{uuid.uuid4().hex[:8]}"
    queue = f"escavador_{nome}"
    orq = Orquestrador(bullmq_url, responder_para=f"resultados_{nome}")
    plugin = Plugin("escavador", nome, sem_moeda, "tests", max_tentativas=2)

    async def run_until_dead(message_id: str) -> None:
        broker = await connect(bullmq_url)
        worker = Worker(broker, [plugin], WorkerOptions(backoff_base=0.1))
        task = asyncio.create_task(worker.run())
        try:
            await eventually(lambda: _dead(broker, queue), timeout=30)
        finally:
            worker.stop()
            await task
            await broker.close()

    try:
        job = orq.iniciar_coleta(nome, {"moeda": "XYZ"})
        asyncio.run(run_until_dead(job.message_id))
        job.wait(30)
        assert job.status == "dead-lettered"
        yield queue, job.message_id, "ValueError: unknown currency 'XYZ'"
    finally:
        orq.close()
        asyncio.run(_delete(bullmq_url, queue))


async def _dead(broker: Any, queue: str) -> bool:
    return (await broker.stats(queue)).dead_letters == 1


def test_a_job_failing_past_its_attempts_is_failed_in_bullmq_with_our_reason(
    bullmq_url: str, node_modules: Path, failed_job: tuple[str, str, str]
):
    queue, message_id, reason = failed_job
    seen = run_node(node_modules, "job", node.redis_of(bullmq_url), queue, message_id)
    assert seen["state"] == "failed"
    assert seen["failedReason"] == reason
    assert seen["attemptsMade"] == 2  # one retry through BullMQ's delayed set, then failed
    assert seen["data"]["message_id"] == message_id  # job data = our envelope

    async def dlq_and_replay() -> None:
        broker = await connect(bullmq_url)
        try:
            [(origin, dead)] = await dead_letters(broker, queue)  # `orq dlq list` reads failed jobs
            assert (origin, dead.id, dead.headers[DLQ_REASON]) == (queue, message_id, reason)
            assert await replay(broker, queue) == 1  # `orq dlq replay`: BullMQ's own retry
            stats = await broker.stats(queue)
            assert (stats.depth, stats.dead_letters) == (1, 0)
        finally:
            await broker.close()

    asyncio.run(dlq_and_replay())


def test_bull_board_shows_our_failed_job_with_its_reason(
    bullmq_url: str, node_modules: Path, failed_job: tuple[str, str, str], tmp_path: Path
):
    from tests.notebook.test_browser import open_page, playwright, png_size

    queue, message_id, reason = failed_job
    port = free_port()
    board = start_node(node_modules, "board", node.redis_of(bullmq_url), str(port), queue)
    outside: list[str] = []
    try:
        assert json.loads(board.stdout.readline() or "{}").get("listening") == port, board.stderr.read()
        sync_api = playwright()
        with sync_api.sync_playwright() as pw:
            browser, page = open_page(pw, tmp_path, outside)
            try:
                page.goto(f"http://127.0.0.1:{port}/queue/{queue}?status=failed", wait_until="networkidle")
                sync_api.expect(page.get_by_text(message_id).first).to_be_visible(timeout=30_000)
                sync_api.expect(page.get_by_text(reason).first).to_be_visible(timeout=30_000)
                shot = tmp_path / "bull-board-failed.png"
                page.screenshot(path=str(shot), full_page=True)
            finally:
                browser.close()
        width, height = png_size(shot)
        assert width >= 600 and height >= 150 and shot.stat().st_size > 10_000
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / ".gitignore").write_text("*\n")
        (ARTIFACTS / shot.name).write_bytes(shot.read_bytes())
    finally:
        board.kill()
        board.communicate()
    assert all("127.0.0.1" not in url for url in outside)
