"""What a notebook user reads: a closed orchestrator, a queue nobody serves, rates, running."""

from __future__ import annotations

import html
import time
import uuid
import warnings

import pytest

from orquestrador import ClosedError, Orquestrador
from orquestrador.consumers import NoConsumerWarning
from orquestrador.eventos import EventoJob
from orquestrador.notebook import Painel
from orquestrador.notebook._live import CLOSED
from orquestrador.notebook.jobs import LoteView
from orquestrador.plugins import Plugin
from tests.notebook.helpers import pagina


def test_a_closed_orquestrador_says_so_and_its_dashboard_shows_it(env) -> None:  # type: ignore[no-untyped-def]
    orq, nome, plugin = env
    lote = orq.iniciar_coletas(nome, [{"n": i} for i in range(3)], progress=False).wait(20)
    board = Painel(orq, [plugin])
    orq.close()
    for call in (
        lambda: orq.iniciar_coleta(nome, {"n": 1}),
        lambda: orq.iniciar_coletas(nome, [{"n": 1}], progress=False),
        lambda: orq.esperar_cadeia("x", 1),
        lambda: orq.painel(),
        lambda: orq.iniciar_coleta(nome, {"n": 1}),  # twice: still the same answer
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no "coroutine ... was never awaited"
            with pytest.raises(ClosedError, match=r"^this Orquestrador is closed: create a new one$"):
                call()
    assert CLOSED in board.title.value and board.lancador.lancar.disabled and board.replay_button.disabled
    assert (
        board.launch() is None and "ClosedError: this Orquestrador is closed" in board.lancador.mensagem.value
    )
    # What was stored stays readable.
    assert lote.contagem() == {"ok": 3} and len(orq.resultados(nome)) == 3
    orq.close()  # closing twice is harmless


def test_an_unfinished_batch_says_its_orquestrador_closed(env) -> None:  # type: ignore[no-untyped-def]
    orq, _, _ = env
    lote = orq.iniciar_coletas(f"ninguem_{uuid.uuid4().hex[:6]}", [{"n": 1}], progress=False)
    view = LoteView(lote)
    orq.close()
    assert CLOSED in view.status.value
    with pytest.raises(ClosedError):
        lote.wait(5)  # nothing collects results any more: it would wait forever
    with pytest.raises(ClosedError):
        lote[0].wait(5)


def test_wait_warns_when_no_worker_consumes_the_queue(env) -> None:  # type: ignore[no-untyped-def]
    orq, nome, _ = env
    ninguem = f"ninguem_{uuid.uuid4().hex[:6]}"
    job = orq.iniciar_coleta(ninguem, {"n": 1})
    unserved = f"no worker consumes queue escavador_{ninguem}.*orq worker escavador {ninguem}"
    with pytest.warns(NoConsumerWarning, match=unserved), pytest.raises(TimeoutError):
        job.wait(6)
    lote = orq.iniciar_coletas(ninguem, [{"n": 2}, {"n": 3}], progress=False)
    with pytest.warns(NoConsumerWarning, match="nothing started after 5 s"), pytest.raises(TimeoutError):
        lote.wait(6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a served queue: no warning, however long it takes
        orq.iniciar_coletas(nome, [{"n": i} for i in range(3)], progress=False).wait(20)


def test_the_batch_shows_its_id_and_the_line_that_reopens_it(env) -> None:  # type: ignore[no-untyped-def]
    orq, nome, _ = env
    lote = orq.iniciar_coletas(nome, [{"n": i} for i in range(4)], progress=False).wait(20)
    view = LoteView(lote)
    shown = html.unescape(view.header.value)
    assert lote.id in shown and f'orq.lote("{lote.id}")' in shown
    again = eval(f'orq.lote("{lote.id}")')  # the line as a user pastes it
    assert again.id == lote.id and len(again) == 4 and again.contagem() == {"ok": 4}


def test_a_finished_batch_shows_its_average_rate(env) -> None:  # type: ignore[no-untyped-def]
    orq, nome, _ = env
    lote = orq.iniciar_coletas(nome, [{"n": i} for i in range(10)], progress=False).wait(20)
    t0 = time.time() - 3600  # an hour ago: a "last 10 seconds" rate would read 0.0
    conn = orq._core.store._conn()
    for i, job in enumerate(lote):
        conn.execute("UPDATE jobs SET enviado_em = ?, concluido_em = ? WHERE message_id = ?",
                     (t0, t0 + 1 + 0.4 * i, job.message_id))  # fmt: skip
    view = LoteView(lote)
    assert "10/10 done" in view.status.value and "avg 2.2 jobs/s" in view.status.value  # 10 in 4.6 s


def test_the_dashboard_and_the_batch_show_the_same_rate_and_eta(env) -> None:  # type: ignore[no-untyped-def]
    orq, _, _ = env
    ninguem = Plugin("escavador", f"ninguem_{uuid.uuid4().hex[:6]}", pagina, "tests")
    lote = orq.iniciar_coletas(ninguem.nome, [{"n": i} for i in range(20)], progress=False)
    now = time.time()
    conn = orq._core.store._conn()
    for i, job in enumerate(lote):  # launched 100 s ago; 10 finished 5 s ago, one every 0.1 s
        done = ("ok", now - 5 + 0.1 * i) if i < 10 else ("queued", None)
        conn.execute("UPDATE jobs SET enviado_em = ?, estado = ?, concluido_em = ? WHERE message_id = ?",
                     (now - 100, *done, job.message_id))  # fmt: skip
    board = Painel(orq, [ninguem])
    view = LoteView(lote)
    # 10 jobs in the last 10 s: 1.0 jobs/s, and the 10 left take 10 s more; both say the same.
    assert "10/20 done" in board.status.value and "1.0 jobs/s · ETA 10 s" in board.status.value
    assert "10/20 done" in view.status.value and "1.0 jobs/s · ETA 10 s" in view.status.value
    board.close()


def test_a_job_waiting_for_its_retry_is_queued_not_running(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Running counts jobs holding a worker's slot: a retry in backoff holds none."""
    from orquestrador.store import Store

    with Orquestrador(f"memory://{uuid.uuid4().hex}") as orq:
        job = orq.iniciar_coleta("x", {"n": 1})
    store = Store(orq._core.store.path)

    def event(evento: str, tentativa: int) -> EventoJob:
        return EventoJob(evento=evento, correlation_id=job.correlation_id, message_id=job.message_id,
                         alvo="x", worker="w1", tentativa=tentativa, detalhe={})  # fmt: skip

    store.record_events([event("iniciado", 1)])
    assert store.job(job.message_id).estado == "running"
    store.record_events([event("retry", 1)])
    assert store.job(job.message_id).estado == "queued"
    store.record_events([event("iniciado", 2), event("retry", 2), event("iniciado", 3)])  # one batch
    assert (store.job(job.message_id).estado, store.job(job.message_id).tentativa) == ("running", 3)
    store.record_events([event("retry", 1)])  # a late event of an earlier attempt changes nothing
    assert store.job(job.message_id).estado == "running"


def test_running_never_exceeds_the_workers_slots(env) -> None:  # type: ignore[no-untyped-def]
    """Jobs that fail and wait for their retry leave the worker's slots (2 here) to others."""
    from orquestrador.errors import Retry
    from tests.notebook.helpers import BackgroundWorker

    orq, _, _ = env
    nome = f"lento_{uuid.uuid4().hex[:6]}"
    seen: set[str] = set()

    def lento(payload: dict) -> dict:
        if payload["n"] not in seen:
            seen.add(payload["n"])
            raise Retry("first attempt fails", delay=1.0)
        time.sleep(0.3)  # long enough for its start to be seen
        return {"n": payload["n"]}

    worker = BackgroundWorker(orq._core.url, nome, handler=lento, concurrency=2, max_tentativas=3)
    try:
        lote = orq.iniciar_coletas(nome, [{"n": str(i)} for i in range(16)], progress=False)
        most = 0
        deadline = time.monotonic() + 60
        while not lote.done and time.monotonic() < deadline:
            most = max(most, lote.contagem().get("running", 0))
            time.sleep(0.02)
        assert lote.contagem() == {"ok": 16}
        assert 0 < most <= 2, most
    finally:
        worker.stop()
