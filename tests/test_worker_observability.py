"""What operators read from a running worker: log lines naming each job, Prometheus metrics, imports."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from orquestrador import Orquestrador, Worker, WorkerOptions, escavador, logs, registry
from orquestrador.brokers import connect
from tests.conftest import broker_url_for
from tests.servers import NatsServer, RedisServer
from tests.servers.process import free_port
from tests.test_cli_worker import delete_queues, orq_worker, wait_serving
from tests.workers import ROOT, wait_for


def scrape(port: int) -> dict[tuple[str, str], float]:
    """``(sample name, alvo label) -> value`` from a worker's /metrics page."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, sample.labels.get("alvo", "")): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.mark.rabbitmq
def test_json_logs_name_the_job_on_every_line_and_hide_the_password(request: pytest.FixtureRequest):
    url = broker_url_for("rabbitmq", request)
    assert ":guest@" in url  # the broker URL carries a password
    suffix = uuid.uuid4().hex[:8]
    worker = orq_worker(url, suffix, "escavador", f"falha_uma_vez_{suffix}", f"recusa_{suffix}",
                        "--log-format", "json")  # fmt: skip
    try:
        wait_serving(worker, 2)
        with Orquestrador(url, responder_para=f"res_{suffix}") as orq:
            retried = orq.iniciar_coleta(f"falha_uma_vez_{suffix}", {})
            refused = orq.iniciar_coleta(f"recusa_{suffix}", {})
            assert retried.wait(60).status == "ok"
            assert refused.wait(60).status in ("erro", "dead-lettered")
            wait_for(lambda: "dead-lettered after" in worker.output(), 30)
    finally:
        code = worker.stop()
        delete_queues(url, f"escavador_falha_uma_vez_{suffix}", f"escavador_recusa_{suffix}", f"res_{suffix}")
    assert code == 0, worker.output()
    lines = [json.loads(line) for line in worker.output().splitlines()]  # every line is one object
    assert all({"ts", "level", "logger", "message"} <= set(line) for line in lines)
    assert not any(":guest@" in json.dumps(line) for line in lines)
    assert any("guest:***@" in line["message"] for line in lines)

    def of(job_message_id: str) -> list[dict[str, object]]:
        return [line for line in lines if line.get("message_id") == job_message_id]

    mine = of(retried.message_id)
    texts = [line["message"] for line in mine]
    assert any("handling attempt 1" in t for t in texts)  # ctx.log
    assert any("own logger, attempt 2" in t for t in texts)  # the handler's own logger, in a thread
    assert any("attempt 1 failed" in t and "retry in" in t for t in texts)  # the runtime's retry
    assert {line["correlation_id"] for line in mine} == {retried.correlation_id}
    assert {line["tentativa"] for line in mine} == {1, 2}
    assert all(line["alvo"] == f"falha_uma_vez_{suffix}" and line["worker"] for line in mine)
    dead = of(refused.message_id)
    assert any(line["level"] == "ERROR" and "dead-lettered" in str(line["message"]) for line in dead)
    assert {line["correlation_id"] for line in dead} == {refused.correlation_id}


async def test_text_logs_show_the_job_ids_on_runtime_and_handler_lines():
    stream = io.StringIO()
    handler = logs.make_handler(stream, "text")
    root = logging.getLogger()
    root.addHandler(handler)
    previous = root.level
    root.setLevel(logging.INFO)
    nome = f"registra_{uuid.uuid4().hex[:6]}"

    @escavador(nome, max_tentativas=1)
    def registra(payload: dict[str, object]) -> dict[str, object]:
        logging.getLogger("meu.plugin").info("working on %s", payload["url"])
        raise RuntimeError("broken on purpose")

    url = f"memory://{uuid.uuid4().hex}"
    broker = await connect(url)
    worker = Worker(broker, [registry.get("escavador", nome)], WorkerOptions(fetch_timeout=0.2))
    task = asyncio.create_task(worker.run())
    try:
        from orquestrador.orchestrator import AsyncOrquestrador

        orq = AsyncOrquestrador(url)
        await orq.start()
        env = await orq.iniciar("iniciar_coleta", nome, {"url": "https://user:s3cr3t@example.org/x"})
        await asyncio.wait_for(_until(lambda: "dead-lettered" in stream.getvalue()), 30)
        await orq.close()
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)
        await broker.close()
        root.removeHandler(handler)
        root.setLevel(previous)
        registry.unregister("escavador", nome)
    text = stream.getvalue()
    ids = f"[correlation_id={env.correlation_id} message_id={env.message_id} alvo={nome} tentativa=1]"
    handler_line = next(line for line in text.splitlines() if "working on" in line)
    assert handler_line.endswith(ids)
    assert "user:***@example.org" in handler_line and "s3cr3t" not in text
    assert any("dead-lettered" in line and line.endswith(ids) for line in text.splitlines())


async def _until(check) -> None:  # type: ignore[no-untyped-def]
    while not check():
        await asyncio.sleep(0.05)


@pytest.mark.nats
def test_metrics_count_ok_retried_and_dead_lettered_jobs(nats_url: str):
    suffix = uuid.uuid4().hex[:8]
    port = free_port()
    eco, falha, recusa = f"eco_{suffix}", f"falha_uma_vez_{suffix}", f"recusa_{suffix}"
    worker = orq_worker(nats_url, suffix, "escavador", eco, falha, recusa,
                        env={"ORQ_METRICS_PORT": str(port), "ORQ_METRICS_ADDR": "127.0.0.1"})  # fmt: skip
    try:
        wait_serving(worker, 3)
        with Orquestrador(nats_url, responder_para=f"res_{suffix}") as orq:
            jobs = [orq.iniciar_coleta(eco, {"i": i}) for i in range(3)]
            jobs += [orq.iniciar_coleta(falha, {}), orq.iniciar_coleta(recusa, {})]
            for job in jobs:
                job.wait(60)
        # The result is published before the counters move on: wait for the last ones.
        dead = ("orq_jobs_dead_lettered_total", recusa)
        metrics = wait_for(lambda: (m := scrape(port)).get(dead) and m, 30)
    finally:
        worker.stop()
        delete_queues(nats_url, *(f"escavador_{name}" for name in (eco, falha, recusa)), f"res_{suffix}")
    assert metrics[("orq_jobs_received_total", eco)] == 3
    assert metrics[("orq_jobs_ok_total", eco)] == 3
    assert metrics[("orq_handler_duration_seconds_count", eco)] == 3
    assert metrics[("orq_jobs_received_total", falha)] == 2
    assert metrics[("orq_jobs_failed_total", falha)] == 1
    assert metrics[("orq_jobs_retried_total", falha)] == 1
    assert metrics[("orq_jobs_ok_total", falha)] == 1
    assert metrics[("orq_jobs_failed_total", recusa)] == 1
    assert metrics[("orq_jobs_dead_lettered_total", recusa)] == 1
    assert metrics.get(("orq_jobs_ok_total", recusa), 0) == 0
    assert metrics[("orq_jobs_in_flight", eco)] == 0
    assert metrics[("orq_broker_reconnects_total", "")] == 0


@pytest.mark.nats
def test_supervisor_serves_the_sum_of_its_children_metrics(nats_url: str):
    suffix = uuid.uuid4().hex[:8]
    port = free_port()
    worker = orq_worker(nats_url, suffix, "escavador", f"lento_{suffix}", "--processes", "2", "-c", "1",
                        "--metrics-port", str(port), env={"ORQ_METRICS_ADDR": "127.0.0.1"})  # fmt: skip
    try:
        wait_serving(worker, 2)
        with Orquestrador(nats_url, responder_para=f"res_{suffix}") as orq:
            jobs = [orq.iniciar_coleta(f"lento_{suffix}", {"segundos": 0.5}) for _ in range(6)]
            pids = {job.wait(90).result["pid"] for job in jobs}
        ok = ("orq_jobs_ok_total", f"lento_{suffix}")
        metrics = wait_for(lambda: (m := scrape(port)).get(ok) == 6 and m)
    finally:
        worker.stop()
        delete_queues(nats_url, f"escavador_lento_{suffix}", f"res_{suffix}")
    assert len(pids) == 2  # two processes did the work; one port shows all of it
    assert metrics[("orq_jobs_received_total", f"lento_{suffix}")] == 6


@pytest.mark.nats
def test_a_worker_process_never_imports_pandas_ipywidgets_pyarrow_or_rich(nats_url: str):
    suffix = uuid.uuid4().hex[:8]
    worker = orq_worker(nats_url, suffix, "escavador", f"modulos_{suffix}")
    try:
        wait_serving(worker, 1)
        with Orquestrador(nats_url, responder_para=f"res_{suffix}") as orq:
            loaded = orq.iniciar_coleta(f"modulos_{suffix}", {}).wait(60).result
    finally:
        worker.stop()
        delete_queues(nats_url, f"escavador_modulos_{suffix}", f"res_{suffix}")
    assert loaded is not None
    # rich too: the CLI makes its consoles on first use, and a worker never prints a table;
    # and without --metrics-port, prometheus_client is not even imported.
    assert loaded == {"pandas": False, "ipywidgets": False, "pyarrow": False, "rich": False,
                      "prometheus_client": False}  # fmt: skip


@pytest.mark.parametrize("kind", [pytest.param("nats", marks=pytest.mark.nats),
                                  pytest.param("redis", marks=pytest.mark.redis)])  # fmt: skip
def test_reconnects_are_counted_and_the_password_never_logged(kind: str, tmp_path: Path):
    """A throwaway server with a password, restarted under a running worker.

    NATS counts its client's reconnects; on Redis (which reconnects inside each command) a
    fetch that works again after failing is the reconnect.
    """
    password = f"s3cr3t-{uuid.uuid4().hex[:6]}"
    suffix = uuid.uuid4().hex[:8]
    port = free_port()
    if kind == "nats":
        server: NatsServer | RedisServer = NatsServer(tmp_path, user="orq", password=password)
        user = "orq"
    else:
        server, user = RedisServer(tmp_path, password=password), ""
    with server:
        url = server.url if kind == "redis" else server.url.replace("://", f"://orq:{password}@")
        worker = orq_worker(url, suffix, "escavador", f"eco_{suffix}", "--log-format", "json",
                            "--metrics-port", str(port), env={"ORQ_METRICS_ADDR": "127.0.0.1"})  # fmt: skip
        try:
            wait_serving(worker, 1)
            if kind == "redis":  # redis-py retries ~10 s by itself: stay down until a fetch fails
                server.stop()
                wait_for(lambda: "failed" in worker.output(), 60)
                server.start()
            else:
                server.restart()
            reconnects = ("orq_broker_reconnects_total", "")
            wait_for(lambda: scrape(port).get(reconnects, 0) >= 1, 60)
            with Orquestrador(url, responder_para=f"res_{suffix}") as orq:
                assert orq.iniciar_coleta(f"eco_{suffix}", {"k": 2}).wait(60).status == "ok"
        finally:
            code = worker.stop()
    out = worker.output()
    assert code == 0, out
    assert password not in out
    assert f"{user}:***@127.0.0.1:{server.port}" in out  # the URL still says where it connects


def test_with_json_logs_a_fatal_error_is_a_json_line_too():
    out = subprocess.run(
        [sys.executable, "-m", "orquestrador.cli", "worker", "escavador", "no_such_plugin", "-b", "memory://"],
        capture_output=True, text=True, cwd=ROOT, timeout=60, env={**os.environ, "ORQ_LOG_FORMAT": "json"},
    )  # fmt: skip
    assert out.returncode == 2
    lines = [json.loads(line) for line in out.stderr.splitlines()]
    assert lines[-1]["level"] == "ERROR" and "no escavador named 'no_such_plugin'" in lines[-1]["message"]
