"""The synchronous API as notebooks use it (in-memory broker: these test the core only)."""

from __future__ import annotations

import asyncio
import threading
import uuid

import pandas as pd
import pytest

from orquestrador import AsyncOrquestrador, Orquestrador, Worker, WorkerOptions
from orquestrador.brokers import connect
from orquestrador.errors import JobTimeout
from orquestrador.plugins import Plugin


def triplo(payload: dict) -> dict:
    return {"triplo": payload["n"] * 3, "texto": {"curto": str(payload["n"])}}


class BackgroundWorker:
    """A worker on its own thread and loop, as a separate process would be."""

    def __init__(self, url: str, nome: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.worker: Worker | None = None
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._run(url, nome),))
        self.thread.start()

    async def _run(self, url: str, nome: str) -> None:
        broker = await connect(url)
        self.worker = Worker(broker, [Plugin("escavador", nome, triplo, "tests")], WorkerOptions())
        await self.worker.run()

    def stop(self) -> None:
        while self.worker is None:
            threading.Event().wait(0.01)
        self.loop.call_soon_threadsafe(self.worker.stop)
        self.thread.join(10)


@pytest.fixture
def setup():  # type: ignore[no-untyped-def]
    url = f"memory://{uuid.uuid4().hex}"
    nome = f"triplo_{uuid.uuid4().hex[:6]}"
    worker = BackgroundWorker(url, nome)
    yield url, nome
    worker.stop()


def test_batch_from_a_dataframe_column_and_typed_results(setup):  # type: ignore[no-untyped-def]
    url, nome = setup
    entrada = pd.DataFrame({"payload": [{"n": i} for i in range(30)]})
    with Orquestrador(url) as orq:
        lote = orq.iniciar_coletas(nome, entrada["payload"], progress=False).wait(20)
        frame = orq.resultados(alvo=nome)

    assert lote.contagem() == {"ok": 30}
    assert sorted(frame["resultado.triplo"]) == [i * 3 for i in range(30)]
    assert str(frame["enviado_em"].dtype) == "datetime64[ns, UTC]"
    assert str(frame["duracao"].dtype).startswith("timedelta64")
    assert "resultado.texto.curto" in frame.columns


def test_results_survive_a_restart_of_the_orchestrator(setup):  # type: ignore[no-untyped-def]
    url, nome = setup
    with Orquestrador(url) as orq:
        job = orq.iniciar_coleta(nome, {"n": 5}).wait(20)
    with Orquestrador(url) as again:
        assert again.job(job.message_id).status == "ok"  # type: ignore[union-attr]
        assert again.resultados(alvo=nome)["resultado.triplo"].tolist() == [15]


def test_works_inside_a_running_event_loop_like_jupyter(setup):  # type: ignore[no-untyped-def]
    url, nome = setup

    async def notebook_cell() -> dict:
        # Jupyter runs cells inside its own loop; the sync API must not touch it.
        with Orquestrador(url) as orq:
            return orq.iniciar_coleta(nome, {"n": 2}).wait(20).result or {}

    assert asyncio.run(notebook_cell())["triplo"] == 6


def test_wait_times_out_with_a_hint_when_no_worker_runs():
    with Orquestrador(f"memory://{uuid.uuid4().hex}") as orq:
        job = orq.iniciar_coleta("ninguem", {"n": 1})
        with pytest.raises(JobTimeout, match="Is a worker running"):
            job.wait(0.3)
        assert job.status == "queued"


def test_payload_must_be_an_object():
    from orquestrador.errors import EnvelopeError

    with Orquestrador("memory://") as orq, pytest.raises(EnvelopeError, match="must be a dict"):
        orq.iniciar_coleta("x", ["not", "a", "dict"])  # type: ignore[arg-type]


async def test_duplicate_results_are_recorded_once():
    url = f"memory://{uuid.uuid4().hex}"
    orq = AsyncOrquestrador(url)
    await orq.start()
    env = await orq.iniciar("iniciar_coleta", "dup", {"n": 1})
    from orquestrador.envelope import encode, nova

    result = nova("resultado_coleta", {"ok": True}, alvo="dup", correlation_id=env.correlation_id,
                  causation_id=env.message_id).with_changes(status="ok")  # fmt: skip
    assert orq.broker is not None
    for _ in range(3):  # a redelivered job may answer more than once
        await orq.broker.publish(
            orq.responder_para, encode(result.with_changes(message_id=str(uuid.uuid4())))
        )
    row = await orq.esperar(env.message_id, 10)
    await asyncio.sleep(0.3)
    await orq.close()
    assert row is not None and row.estado == "ok"
    assert len(orq.store.jobs(alvo="dup")) == 1


def test_a_batch_lives_in_the_store_and_reopens_after_a_restart(setup, tmp_path):  # type: ignore[no-untyped-def]
    url, nome = setup
    with Orquestrador(url, home=tmp_path) as orq:
        outro = orq.iniciar_coleta(nome, {"n": 100})  # not part of the batch
        lote = orq.iniciar_coletas(nome, ({"n": i} for i in range(25)), progress=False).wait(20)
        outro.wait(20)
        assert len(lote) == 25
        assert [j.message_id for j in lote] == [lote[i].message_id for i in range(25)]
        assert lote[-1].message_id == lote.jobs[24].message_id
        with pytest.raises(IndexError):
            lote[25]
        assert sorted(lote.resultados()["resultado.triplo"]) == [i * 3 for i in range(25)]
        lote_id = lote.id

    with Orquestrador(url, home=tmp_path) as again:  # a new kernel: same store, same batch
        reaberto = again.lote(lote_id)
        assert reaberto is not None and len(reaberto) == 25
        assert reaberto.contagem() == {"ok": 25}
        assert again.lote("no-such-batch") is None


def test_lotes_lists_every_batch_with_its_counts_after_a_restart(setup, tmp_path):  # type: ignore[no-untyped-def]
    url, nome = setup
    with Orquestrador(url, home=tmp_path) as orq:
        assert orq.lotes().empty and "lote" in orq.lotes().columns
        primeiro = orq.iniciar_coletas(nome, ({"n": i} for i in range(5)), progress=False).wait(20)
        orq.iniciar_coleta(nome, {"n": 99}).wait(20)  # not a batch: not listed
        parado = orq.iniciar_coletas("ninguem_escuta", [{"n": 1}, {"n": 2}], progress=False)

    with Orquestrador(url, home=tmp_path) as again:  # a new kernel finds both batches
        lotes = again.lotes()
    assert lotes["lote"].tolist() == [primeiro.id, parado.id]
    first, second = lotes.iloc[0], lotes.iloc[1]
    assert (first["alvo"], first["jobs"], first["ok"], first["queued"]) == (nome, 5, 5, 0)
    assert (second["alvo"], second["jobs"], second["queued"]) == ("ninguem_escuta", 2, 2)
    assert first["enviado_em"] <= first["concluido_em"]
    assert pd.isna(second["concluido_em"])  # not finished
    assert str(lotes["enviado_em"].dtype) == "datetime64[ns, UTC]"
