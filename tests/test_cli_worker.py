"""`orq worker` as operators run it: several queues per process, --all, --processes N, on real brokers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from orquestrador import Orquestrador
from orquestrador.brokers import connect
from orquestrador.errors import BrokerError
from tests.conftest import broker_url_for
from tests.workers import ROOT, WorkerProcess, wait_for

REAL_BROKERS = [
    pytest.param("nats", marks=pytest.mark.nats),
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param("rabbitmq", marks=pytest.mark.rabbitmq),
]


def orq_worker(url: str, suffix: str, *args: str, env: dict[str, str] | None = None) -> WorkerProcess:
    """A real ``orq worker …`` process with the test plugins importable."""
    environ = {**os.environ, "ORQ_TEST_PLUGIN_SUFFIX": suffix, "ORQ_BROKER_URL": url, **(env or {})}
    command = [sys.executable, "-m", "orquestrador.cli", "worker", *args, "--module", "tests.plugins_teste"]
    proc = subprocess.Popen(
        command, cwd=ROOT, env=environ, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    return WorkerProcess(proc)


def wait_serving(worker: WorkerProcess, count: int, timeout: float = 60.0) -> None:
    try:
        wait_for(lambda: worker.output().count("serving ") >= count, timeout)
    except AssertionError:
        worker.stop()
        raise AssertionError(f"expected {count} served queues:\n{worker.output()[-4000:]}") from None


def delete_queues(url: str, *queues: str) -> None:
    async def run() -> None:
        broker = await connect(url)
        try:
            for queue in queues:
                with contextlib.suppress(BrokerError):
                    await broker.delete(queue)
        finally:
            await broker.close()

    asyncio.run(run())


@pytest.fixture
def suffix() -> Iterator[str]:
    yield uuid.uuid4().hex[:8]


@pytest.mark.parametrize("name", REAL_BROKERS)
def test_one_process_serves_several_queues(name: str, suffix: str, request: pytest.FixtureRequest):
    url = broker_url_for(name, request)
    worker = orq_worker(url, suffix, "escavador", f"eco_{suffix}", f"quadrado_{suffix}", "-c", "2")
    try:
        wait_serving(worker, 2)
        with Orquestrador(url, responder_para=f"res_{suffix}") as orq:
            eco = orq.iniciar_coleta(f"eco_{suffix}", {"k": 1})
            quadrado = orq.iniciar_coleta(f"quadrado_{suffix}", {"x": 7})
            assert eco.wait(60).result["eco"] == {"k": 1}
            assert quadrado.wait(60).result == {"quadrado": 49}
            workers = {row["worker"] for row in orq.rastrear(eco.correlation_id).to_dict("records")}
            workers |= {row["worker"] for row in orq.rastrear(quadrado.correlation_id).to_dict("records")}
    finally:
        code = worker.stop()
        delete_queues(url, f"escavador_eco_{suffix}", f"escavador_quadrado_{suffix}", f"res_{suffix}")
    assert code == 0, worker.output()
    assert len({w for w in workers if isinstance(w, str) and w}) == 1  # one process answered both


@pytest.mark.nats
def test_all_serves_every_registered_plugin(nats_url: str, suffix: str):
    worker = orq_worker(nats_url, suffix, "--all", "-c", "2")
    try:
        wait_serving(worker, 2)
        with Orquestrador(nats_url, responder_para=f"res_{suffix}") as orq:
            eco = orq.iniciar_coleta(f"eco_{suffix}", {"k": "all"})
            quadrado = orq.iniciar_coleta(f"quadrado_{suffix}", {"x": 3})
            assert eco.wait(60).result["eco"] == {"k": "all"}
            assert quadrado.wait(60).result == {"quadrado": 9}
            # Registering every plugin (salvar writes Parquet) must not load pyarrow or pandas.
            loaded = orq.iniciar_coleta(f"modulos_{suffix}", {}).wait(60).result
            assert loaded is not None and not loaded["pandas"] and not loaded["pyarrow"], loaded
    finally:
        code = worker.stop()
    out = worker.output()
    assert code == 0, out
    # Installed plugins are served too, found through their entry points.
    assert "serving escavador_http " in out and f"serving escavador_eco_{suffix} " in out


def test_all_with_a_subcommand_is_refused():
    out = subprocess.run(
        [sys.executable, "-m", "orquestrador.cli", "worker", "--all", "escavador", "http"],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2
    assert "--all" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.nats
def test_processes_share_the_work_restart_a_dead_child_and_drain_on_sigterm(nats_url: str, suffix: str):
    worker = orq_worker(nats_url, suffix, "escavador", f"lento_{suffix}", "--processes", "2", "-c", "1")
    queue = f"escavador_lento_{suffix}"
    try:
        wait_serving(worker, 2)
        with Orquestrador(nats_url, responder_para=f"res_{suffix}") as orq:
            # Each child takes one job at a time: four 1-second jobs keep both busy.
            jobs = [orq.iniciar_coleta(f"lento_{suffix}", {"segundos": 1.0}) for _ in range(4)]
            pids = {job.wait(90).result["pid"] for job in jobs}
            assert len(pids) == 2, pids
            assert worker.pid not in pids  # the supervisor runs no job

            # A child killed from outside comes back, and the pool keeps working.
            os.kill(next(iter(pids)), signal.SIGKILL)
            wait_for(lambda: "restarting in" in worker.output(), 60)
            wait_serving(worker, 3)

            # SIGTERM to the supervisor: both children finish their running job, then exit.
            slow = [orq.iniciar_coleta(f"lento_{suffix}", {"segundos": 3.0}) for _ in range(2)]
            wait_for(lambda: all(job.status == "running" for job in slow), 60)
            worker.proc.send_signal(signal.SIGTERM)
            code = worker.proc.wait(90)
            assert [job.wait(30).status for job in slow] == ["ok", "ok"]
            assert len({job.result["pid"] for job in slow}) == 2
    finally:
        worker.stop()
        delete_queues(nats_url, queue, f"res_{suffix}")
    assert code == 0, worker.output()
    assert worker.output().count("draining") >= 3  # the supervisor and each child


def test_children_that_keep_dying_stop_the_supervisor(suffix: str):
    # Nothing listens on port 1: every child fails to connect and exits at once.
    worker = orq_worker("nats://127.0.0.1:1", suffix, "escavador", f"eco_{suffix}", "--processes", "2")
    code = worker.proc.wait(240)
    wait_for(lambda: "keeps dying" in worker.output(), 10)
    out = worker.output()
    assert code == 1, out
    assert out.count("restarting in") >= 4
    assert "Traceback" not in out
