"""`orq worker pipeline` runs a module's rules in their own process: no notebook needed."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from orquestrador import Orquestrador
from tests.workers import ROOT, WorkerProcess, start_worker

pytestmark = pytest.mark.nats


def test_rules_run_as_a_worker_process(nats_url: str):
    suffix = uuid.uuid4().hex[:8]
    env = {**os.environ, "ORQ_TEST_PLUGIN_SUFFIX": suffix, "ORQ_BROKER_URL": nats_url}
    runner = WorkerProcess(
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "orquestrador.cli",
                "worker",
                "pipeline",
                f"teste_{suffix}",
                "--module",
                "tests.plugins_teste",
            ],
            cwd=ROOT,
            env=env,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )
    )
    runner.wait_ready()
    workers = [start_worker(nats_url, "lista", suffix), start_worker(nats_url, "quadrado", suffix)]
    try:
        with Orquestrador(nats_url, responder_para=f"res_{suffix}") as orq:
            job = orq.iniciar_coleta(f"lista_{suffix}", {"n": 5}, pipeline=f"teste_{suffix}")
            counts = orq.esperar_cadeia(job.correlation_id, 60)
            frame = orq.resultados(alvo=f"quadrado_{suffix}")
    finally:
        for process in (runner, *workers):
            process.stop()
    assert counts == {"ok": 6}
    assert sorted(frame["resultado.quadrado"]) == [0, 1, 4, 9, 16]
    assert set(frame["correlation_id"]) == {job.correlation_id}
