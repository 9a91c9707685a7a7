"""The built-in executores in real worker processes, through the real NATS server."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from orquestrador import Orquestrador
from orquestrador.brokers import connect
from tests.workers import ROOT, WorkerProcess

pytestmark = pytest.mark.nats


def start_builtin(url: str, kind: str, nome: str, env: dict[str, str], *args: str) -> WorkerProcess:
    command = [sys.executable, "-m", "orquestrador.cli", "worker", kind, nome, "--broker", url, *args]
    proc = subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, **env},
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    worker = WorkerProcess(proc)
    worker.wait_ready()
    return worker


@pytest.fixture
def orq(nats_url: str) -> Iterator[Orquestrador]:
    results = f"res_exec_{uuid.uuid4().hex[:10]}"
    with Orquestrador(nats_url, responder_para=results) as o:
        yield o
    asyncio.run(_delete(nats_url, results))


async def _delete(url: str, queue: str) -> None:
    broker = await connect(url)
    await broker.delete(queue)
    await broker.close()


def test_comando_runs_in_a_worker_process_and_refusals_are_dead_lettered(
    orq: Orquestrador, nats_url: str, tmp_path: Path
):
    marker = tmp_path / "pwned"
    worker = start_builtin(
        nats_url, "executor", "comando", {"ORQ_COMANDO_ALLOW": "echo,wc,seq"}, "--max-tentativas", "2",
        "--max-output-bytes", "300",
    )  # fmt: skip
    try:
        ok = orq.iniciar_execucao("comando", {"programa": "echo", "args": ["olá", f"$(touch {marker})"]})
        capped = orq.iniciar_execucao("comando", {"programa": "seq", "args": ["1", "1000"]})
        greedy = orq.iniciar_execucao("comando", {"programa": "seq", "args": ["3"], "max_bytes": 10**12})
        refused = orq.iniciar_execucao("comando", {"programa": "sh", "args": ["-c", f"touch {marker}"]})
        failing = orq.iniciar_execucao(
            "comando",
            {"programa": "wc", "args": ["/nao/existe"], "falhar_se_codigo_diferente_de_zero": True},
        )
        typo = orq.iniciar_execucao("comando", {"programa": "echo", "arg": ["-n", "x"]})  # not 'args'
        for job in (ok, capped, greedy, refused, failing, typo):
            job.wait(60)
    finally:
        assert worker.stop() == 0

    assert ok.status == "ok"
    assert ok.result is not None
    assert ok.result["codigo"] == 0
    assert ok.result["stdout"] == f"olá $(touch {marker})\n"
    assert ok.result["truncado"] is False

    assert capped.result is not None  # the worker's --max-output-bytes lowered the default
    assert (len(capped.result["stdout"]), capped.result["truncado"]) == (300, True)
    assert greedy.status == "dead-lettered"  # a payload cannot lift the worker's ceiling
    assert greedy.erro is not None and "ORQ_COMANDO_MAX_BYTES=300" in greedy.erro["mensagem"]
    assert greedy.tentativa == 1

    assert refused.status == "dead-lettered"
    assert refused.erro is not None
    assert refused.erro["tipo"] == "PermanentFailure"
    assert "ORQ_COMANDO_ALLOW" in refused.erro["mensagem"]
    assert refused.tentativa == 1  # permanent: not retried

    assert failing.status == "dead-lettered"
    assert failing.erro is not None
    assert failing.erro["tipo"] == "ComandoFalhou"
    assert failing.tentativa == 2  # an ordinary failure: retried, then dead-lettered
    assert not marker.exists()

    assert typo.status == "dead-lettered"  # the payload schema refused it before anything ran
    assert typo.erro is not None and typo.tentativa == 1
    assert typo.erro["mensagem"].startswith("invalid payload for executor 'comando' (PedidoComando): 'arg':")


def test_salvar_in_a_worker_process_writes_one_file_per_job(orq: Orquestrador, nats_url: str, tmp_path: Path):
    dataset = tmp_path / "dataset"
    worker = start_builtin(nats_url, "executor", "salvar", {"ORQ_DATASET_DIR": str(dataset)})
    try:
        jobs = [
            orq.iniciar_execucao("salvar", {"registros": [{"n": i, "tags": ["a", str(i)]}], "alvo": "teste"})
            for i in range(3)
        ]
        for job in jobs:
            job.wait(60)
    finally:
        assert worker.stop() == 0

    assert [j.status for j in jobs] == ["ok"] * 3
    assert [Path(j.result["arquivo"]).name for j in jobs] == [f"part-{j.message_id}.parquet" for j in jobs]
    df = pd.read_parquet(dataset).sort_values("n")
    assert df["n"].tolist() == [0, 1, 2]
    assert df["tags"].tolist()[0] == '["a", "0"]'
    assert set(df["alvo"].astype(str)) == {"teste"}
