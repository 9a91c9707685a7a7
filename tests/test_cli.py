"""The CLI as a user runs it: real processes, real exit codes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from orquestrador.brokers import embedded
from tests.workers import ROOT, start_worker


def orq(
    *args: str, env: dict[str, str] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("orq")
    command = [exe] if exe else [sys.executable, "-m", "orquestrador.cli"]
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})}, cwd=ROOT,
    )  # fmt: skip


@pytest.mark.parametrize(
    "url", ["nats://127.0.0.1:1", "kafka://127.0.0.1:9092", "amqp://guest:s3cr3t@127.0.0.1:1/"]
)
def test_a_bad_or_unreachable_broker_is_one_clear_line(url: str):
    result = orq("publish", "iniciar_coleta", "--alvo", "http", "--payload", "{}", "--broker", url)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:")
    assert "Traceback" not in result.stderr
    assert "s3cr3t" not in result.stderr


def test_bad_payload_json_is_refused():
    result = orq("publish", "iniciar_coleta", "--alvo", "http", "--payload", "{nope", "--broker", "memory://")
    assert result.returncode == 2
    assert "not valid JSON" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["demo"],
        ["worker"],
        ["worker", "escavador"],
        ["publish"],
        ["trace"],
        ["broker"],
        ["broker", "status"],
        ["plugins"],
        ["request"],
        ["emit"],
        ["subscribe"],
    ],
)
def test_every_command_has_help(args: list[str]):
    result = orq(*args, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout


@pytest.mark.nats
def test_publish_wait_and_trace(nats_url: str):
    suffix = uuid.uuid4().hex[:8]
    worker = start_worker(nats_url, "eco", suffix)
    try:
        result = orq("publish", "iniciar_coleta", "--alvo", f"eco_{suffix}", "--payload",
                     '{"k": "v"}', "--wait", "--broker", nats_url)  # fmt: skip
    finally:
        worker.stop()
    assert result.returncode == 0, result.stderr
    correlation_id, rest = result.stdout.split("\n", 1)
    uuid.UUID(correlation_id)
    answer = json.loads(rest)
    assert answer["status"] == "ok"
    assert answer["resultado"]["eco"] == {"k": "v"}

    shown = orq("trace", correlation_id)
    assert shown.returncode == 0, shown.stderr
    assert "iniciar_coleta" in shown.stdout and "resultado_coleta" in shown.stdout


def test_worker_process_does_not_load_pandas_or_ipywidgets():
    code = (
        "import sys, orquestrador, orquestrador.cli, orquestrador.worker, escavadores.http;"
        "from orquestrador.brokers import nats;"
        "print(sorted(m for m in ('pandas', 'ipywidgets') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stderr


@pytest.mark.nats
def test_demo_runs_on_a_fresh_directory_and_a_second_run_attaches(tmp_path: Path):
    home = tmp_path / ".orquestrador"
    env = {"ORQ_HOME": str(home)}
    try:
        first = orq("demo", "--jobs", "12", env=env)
        assert first.returncode == 0, first.stdout + first.stderr
        assert "12/12 coletas ok" in first.stdout
        server = embedded.status(home)
        assert server is not None

        second = orq("demo", "--jobs", "5", env=env)
        assert second.returncode == 0, second.stdout + second.stderr
        assert "5/5 coletas ok" in second.stdout
        assert embedded.status(home) == server, "the second demo attached to the same server"
        assert server.url in second.stdout
    finally:
        embedded.stop(home)
    assert embedded.status(home) is None


@pytest.mark.bullmq
def test_demo_runs_on_bullmq(bullmq_url: str, tmp_path: Path):
    env = {"ORQ_HOME": str(tmp_path / ".orquestrador")}
    result = orq("demo", "--jobs", "8", "--broker", bullmq_url, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "8/8 coletas ok" in result.stdout


def test_broker_status_and_stop_without_a_server(tmp_path: Path):
    env = {"ORQ_HOME": str(tmp_path / "none")}
    assert orq("broker", "status", env=env).returncode == 1
    stopped = orq("broker", "stop", env=env)
    assert stopped.returncode == 0 and "no embedded broker" in stopped.stdout
