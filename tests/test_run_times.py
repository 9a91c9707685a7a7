"""Start and run times come with the result, so every finished job has them.

The "iniciado" lifecycle event is best effort and often arrives after the result (or never);
the result envelope is durable, so the worker puts the attempt's start and run time on it.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pandas as pd
import pytest

from orquestrador import Orquestrador
from orquestrador.analysis import jobs_frame
from orquestrador.envelope import nova
from orquestrador.store import Store
from orquestrador.store.columnar import read_jobs
from tests.workers import start_worker


def _result(job, **extras):  # type: ignore[no-untyped-def]
    return nova("resultado_coleta", {"v": 1}, alvo="a", correlation_id=job.correlation_id,
                causation_id=job.message_id).with_changes(status="ok", **extras)  # fmt: skip


def test_the_result_sets_the_start_and_the_run_time_and_older_results_still_read(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    novo, antigo, estranho = (nova("iniciar_coleta", {"n": i}, alvo="a") for i in range(3))
    store.record_sent([novo, antigo, estranho], "escavador_a")
    sent = novo.timestamp.timestamp()
    store.record_results([
        _result(novo, iniciado_em="2030-01-01T00:00:02.500000Z", duracao=1.25),
        _result(antigo),  # a worker from before these fields
        _result(estranho, iniciado_em="yesterday", duracao="long"),  # untrusted: ignored
    ])  # fmt: skip

    frame = jobs_frame(read_jobs(store.path))
    assert frame["iniciado_em"].iloc[0] == pd.Timestamp("2030-01-01T00:00:02.5", tz="UTC")
    assert frame["execucao"].iloc[0] == pd.Timedelta(seconds=1.25)
    espera = pd.Timestamp("2030-01-01T00:00:02.5", tz="UTC") - pd.Timestamp(sent, unit="s", tz="UTC")
    assert abs(frame["espera"].iloc[0] - espera) < pd.Timedelta(milliseconds=1)
    assert frame[["iniciado_em", "espera", "execucao"]].iloc[1:].isna().all().all()
    assert frame["status"].tolist() == ["ok", "ok", "ok"]


@pytest.mark.nats
def test_every_finished_job_has_its_start_wait_and_run_time(nats_url: str, tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:8]
    worker = start_worker(nats_url, "lento", suffix, concurrency=8)
    try:
        with Orquestrador(nats_url, home=tmp_path, responder_para=f"res_{suffix}") as orq:
            payloads = [{"segundos": 0.2} for _ in range(16)]
            lote = orq.iniciar_coletas(f"lento_{suffix}", payloads, progress=False).wait(60)
            frame = lote.resultados()
    finally:
        worker.stop()

    assert len(frame) == 16 and (frame["status"] == "ok").all()
    assert frame["iniciado_em"].notna().all()
    assert (frame["execucao"] >= pd.Timedelta(seconds=0.2)).all()  # the handler sleeps 0.2 s
    assert (frame["execucao"] <= frame["duracao"]).all()
    assert frame["espera"].notna().all()
    assert (frame["iniciado_em"] <= frame["concluido_em"]).all()
