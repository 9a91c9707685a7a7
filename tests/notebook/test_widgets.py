"""The notebook widgets: construction, escaping, throttled refreshes, live counts."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from orquestrador import Orquestrador, Worker, WorkerOptions
from orquestrador.brokers import connect
from orquestrador.errors import PermanentFailure
from orquestrador.notebook import Painel, Rastreio, painel, rastreio
from orquestrador.notebook._live import esc, ticker
from orquestrador.notebook.jobs import JobView, LoteView, Rate
from orquestrador.plugins import Plugin

EVIL = "<img src=x onerror=alert(1)>"
ESCAPED = "&lt;img src=x onerror=alert(1)&gt;"


def pagina(payload: dict) -> dict:
    """Stands in for a scraped page whose title is an attack."""
    if payload.get("falhar"):
        raise PermanentFailure(f"bad page {EVIL}")
    return {"titulo": payload.get("titulo", "ok"), "n": payload.get("n")}


class BackgroundWorker:
    """A worker on its own thread and loop, as a separate process would be."""

    def __init__(self, url: str, nome: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.worker: Worker | None = None
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._run(url, nome),))
        self.thread.start()

    async def _run(self, url: str, nome: str) -> None:
        broker = await connect(url)
        plugin = Plugin("escavador", nome, pagina, "tests", max_tentativas=1)
        self.worker = Worker(broker, [plugin], WorkerOptions(concurrency=32))
        await self.worker.run()

    def stop(self) -> None:
        while self.worker is None:
            time.sleep(0.01)
        self.loop.call_soon_threadsafe(self.worker.stop)
        self.thread.join(10)


@pytest.fixture
def env() -> Iterator[tuple[Orquestrador, str, Plugin]]:
    url = f"memory://{uuid.uuid4().hex}"
    nome = f"pagina_{uuid.uuid4().hex[:6]}"
    worker = BackgroundWorker(url, nome)
    orq = Orquestrador(url)
    try:
        yield orq, nome, Plugin("escavador", nome, pagina, "tests")
    finally:
        orq.close()
        worker.stop()


def wait_until(check, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)
    return value


def test_esc_escapes_markup_and_truncates() -> None:
    assert esc(EVIL) == ESCAPED
    assert esc({"t": EVIL}) == "{&quot;t&quot;: &quot;" + ESCAPED + "&quot;}"
    assert len(esc("x" * 1000, limit=10)) == 10
    assert esc(None) == ""


def test_a_page_title_and_an_error_show_literally(env) -> None:  # type: ignore[no-untyped-def]
    orq, nome, plugin = env
    job = orq.iniciar_coleta(nome, {"titulo": EVIL}).wait(20)
    view = JobView(job)
    assert ESCAPED in view.status.value and "<img" not in view.status.value

    bad = orq.iniciar_coleta(nome, {"falhar": True}, correlation_id=EVIL)
    wait_until(lambda: bad.done)
    bad_view = JobView(bad)
    assert bad_view.status.value.count(ESCAPED) == 2 and "<img" not in bad_view.status.value

    trace = Rastreio(orq, job.correlation_id)
    assert ESCAPED in trace.timeline.value and "<img" not in trace.timeline.value
    assert "resultado_coleta" in trace.timeline.value and "ms" in trace.timeline.value
    bad_trace = Rastreio(orq, EVIL)
    assert (
        ESCAPED in bad_trace.status.value and "<img" not in bad_trace.timeline.value + bad_trace.status.value
    )
    shown = bad_trace.timeline.value
    assert "PermanentFailure" in shown and "bad page " + ESCAPED in shown

    board = Painel(orq, [plugin])
    board.refresh()
    assert ESCAPED in board.erros.value and "<img" not in board.erros.value
    board.close()


def test_payload_errors_show_in_the_widget_and_launch_n_copies(env) -> None:  # type: ignore[no-untyped-def]
    orq, _, plugin = env
    board = painel(orq, [plugin])
    form = board.lancador
    form.payload.value = '{"titulo": '
    assert board.launch() == 0 and "invalid JSON" in form.mensagem.value
    form.payload.value = f'["{EVIL}"]'
    assert board.launch() == 0 and "JSON object" in form.mensagem.value and "<img" not in form.mensagem.value
    form.payload.value = '{"titulo": "x"}'
    form.copias.value = 25
    assert board.launch() == 25 and "launched 25" in form.mensagem.value
    wait_until(lambda: orq._core.store.count_by_state().get("ok") == 25)
    board.refresh()
    assert "25/25 done" in board.status.value and board.bar.value == 25
    board.close()


def test_counts_reach_the_number_launched_and_refreshes_are_throttled(env) -> None:  # type: ignore[no-untyped-def]
    orq, nome, plugin = env
    live = ticker(orq)
    board = Painel(orq, [plugin])
    before = board.refreshes
    started = time.monotonic()
    lote = orq.iniciar_coletas(nome, [{"n": i} for i in range(2000)], progress=False)
    view = LoteView(lote)
    wait_until(lambda: view.finished, timeout=60)
    elapsed = time.monotonic() - started
    wait_until(lambda: "2000/2000 done" in board.status.value, timeout=5)
    # 2000 results arrive in many batches; the dashboard redrew at most once per interval.
    redraws = board.refreshes - before
    assert redraws <= elapsed / live.interval + 3, (redraws, elapsed)
    assert view.bar.value == 2000 and "2000/2000 done" in view.status.value
    assert view not in live._views
    board.close()


def test_job_and_lote_show_a_widget_in_jupyter_and_text_elsewhere(env) -> None:  # type: ignore[no-untyped-def]
    orq, nome, _ = env
    job = orq.iniciar_coleta(nome, {"n": 1}).wait(20)
    bundle = job._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["text/plain"] == repr(job) and "status='ok'" in repr(job)
    lote = orq.iniciar_coletas(nome, [{"n": 2}], progress=False).wait(20)
    assert lote._repr_mimebundle_()["text/plain"].startswith("Lote(1 jobs")
    assert isinstance(orq.painel(), Painel) and isinstance(orq.rastreio(job.correlation_id), Rastreio)
    assert isinstance(rastreio(orq, job.correlation_id).finished, bool)


def test_metricas_and_parquet_export(env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import pandas as pd

    orq, nome, _ = env
    lote = orq.iniciar_coletas(nome, [{"n": i} for i in range(9)] + [{"falhar": True}], progress=False)
    lote.wait(20)
    m = orq.metricas()
    row = m[m["alvo"] == nome].iloc[0]
    assert (row["jobs"], row["ok"], row["dead_lettered"]) == (10, 9, 1)
    assert row["taxa_erro"] == pytest.approx(0.1) and 0 <= row["p50"] <= row["p95"] <= row["p99"]
    path = orq.exportar_parquet(tmp_path / "out" / "r.parquet", alvo=nome)
    back = pd.read_parquet(path)
    assert len(back) == 10 and "resultado.titulo" in back.columns


def test_rate_and_eta() -> None:
    rate = Rate(window=10)
    rate.add(0, now=0.0)
    rate.add(50, now=5.0)
    assert rate.per_second == 10 and rate.eta(100) == 10 and rate.eta(0) == 0


def test_workers_never_import_ipywidgets_or_pandas() -> None:
    import subprocess

    code = (
        "import sys, orquestrador, orquestrador.worker, orquestrador.cli, orquestrador.facade;"
        "bad = [m for m in ('ipywidgets', 'pandas') if m in sys.modules]; print(bad); sys.exit(bool(bad))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_dead_letters_show_escaped_and_replay(env) -> None:  # type: ignore[no-untyped-def]
    orq, nome, plugin = env
    bad = orq.iniciar_coleta(nome, {"falhar": True})
    wait_until(lambda: bad.status == "dead-lettered")
    board = Painel(orq, [plugin])
    board._stats_at = 0.0
    board.refresh()
    assert list(board.dlq.options) == [plugin.fila]
    assert [s.dead_letters for s in board.stats] == [1]
    assert ESCAPED in board.dead_letters.value and "<img" not in board.dead_letters.value
    assert board.replay() == 1 and "replayed 1" in board.replay_message.value
    board.close()


class Pagina(BaseModel):
    url: str
    titulo: str = "ok"


def test_the_launcher_checks_the_plugin_schema_and_launches_a_dataframe_column(env) -> None:  # type: ignore[no-untyped-def]
    import pandas as pd

    orq, nome, _ = env
    plugin = Plugin("escavador", nome, pagina, "tests", schema=Pagina)
    dados = pd.DataFrame({"url": [f"http://127.0.0.1/{i}" for i in range(12)], "n": range(12)})
    from_registry = orq.painel(dados)  # every registered plugin; the DataFrame's columns as sources
    assert [label for label, _ in from_registry.lancador.fonte.options][1:] == [
        "one job per row of url",
        "one job per row of n",
    ]
    from_registry.close()
    board = painel(orq, [plugin], dados)
    form = board.lancador
    assert "<code>url</code> string <b>required</b>" in form.esquema.value

    form.payload.value = '{"titulo": "x"}'
    assert board.launch() == 0 and "url: Field required" in form.mensagem.value
    assert orq._core.store.count_by_state() == {}, "nothing leaves when a payload is invalid"

    form.fonte.value = 1  # one job per row, but n is not a url: row 0 is refused before any launch
    assert form.copias.disabled
    assert board.launch() == 0 and "row 0: " in form.mensagem.value

    form.fonte.value = 0
    form.payload.value = f'{{"titulo": "{EVIL}"}}'
    assert board.launch() == 12
    wait_until(lambda: orq._core.store.count_by_state().get("ok") == 12)
    sent = orq.resultados(alvo=nome)
    assert sorted(sent["payload.url"]) == sorted(dados["url"]) and set(sent["resultado.titulo"]) == {EVIL}
    board.close()


def test_the_jobs_view_shows_the_chosen_time_range(env) -> None:  # type: ignore[no-untyped-def]
    orq, nome, plugin = env
    old = orq.iniciar_coletas(nome, [{"n": i} for i in range(3)] + [{"falhar": True}], progress=False)
    old.wait(20)
    # Those four were sent two hours ago, as far as the store knows.
    ids = [j.message_id for j in old]
    orq._core.store._conn().execute(
        f"UPDATE jobs SET enviado_em = enviado_em - 7200, concluido_em = concluido_em - 7200 "
        f"WHERE message_id IN ({','.join('?' * len(ids))})",
        ids,
    )
    orq.iniciar_coletas(nome, [{"n": i} for i in range(5)], progress=False).wait(20)
    board = Painel(orq, [plugin])
    assert "9/9 done" in board.status.value and "PermanentFailure" in board.erros.value
    board.janela.value = 300  # last 5 minutes: redrawn at once
    assert "5/5 done" in board.status.value and board.bar.value == 5 and board.bar.max == 5
    assert board.erros.value == "", "the error two hours ago is outside the range"
    board.janela.value = 86400
    assert "9/9 done" in board.status.value and "dead-lettered" in board.erros.value
    board.close()


def test_closing_the_orchestrator_draws_the_final_counts(env) -> None:  # type: ignore[no-untyped-def]
    orq, nome, plugin = env
    live = ticker(orq)
    board = Painel(orq, [plugin])
    live.interval = live.idle = 3600.0  # after its next pass the refresh thread sleeps an hour
    before = board.refreshes
    orq.iniciar_coleta(nome, {"n": -1}).wait(20)
    wait_until(lambda: board.refreshes > before)
    orq.iniciar_coletas(nome, [{"n": i} for i in range(30)], progress=False).wait(20)
    time.sleep(0.5)
    assert "31/31 done" not in board.status.value, "no timed redraw since the first job"
    orq.close()  # what a notebook's last cell does right after the last result
    assert "31/31 done" in board.status.value and "ok</b> 31" in board.status.value
    assert live._stop.is_set()


def test_queue_stats_refresh_by_themselves(env) -> None:  # type: ignore[no-untyped-def]
    orq, _, _ = env
    idle = Plugin("escavador", f"sem_worker_{uuid.uuid4().hex[:6]}", pagina, "tests")
    board = Painel(orq, [idle])
    board.lancador.copias.value = 7
    assert board.launch() == 7
    # Nobody consumes that queue: the refresh thread alone must show the 7 waiting in it.
    wait_until(lambda: [(s.queue, s.depth) for s in board.stats] == [(idle.fila, 7)], timeout=30)
    assert f"<code>{idle.fila}</code></td><td>7</td>" in board.filas.value
    assert "0/7 done" in board.status.value and "queued</b> 7" in board.status.value
    board.close()


def test_rastreio_follows_the_chain_while_it_runs(env) -> None:  # type: ignore[no-untyped-def]
    orq, _, _ = env
    later = f"tarde_{uuid.uuid4().hex[:6]}"
    job = orq.iniciar_coleta(later, {"titulo": "depois"})
    trace = rastreio(orq, job.correlation_id)
    assert "queued" in trace.status.value and "resultado_coleta" not in trace.timeline.value
    assert not trace.finished and trace in ticker(orq)._views
    worker = BackgroundWorker(orq._core.url, later)  # the worker comes up after the timeline is shown
    try:
        wait_until(lambda: "resultado_coleta" in trace.timeline.value, timeout=30)
        assert "depois" in trace.timeline.value and "ok</b> 1" in trace.status.value
        wait_until(lambda: trace not in ticker(orq)._views)  # finished chains stop being redrawn
        assert trace.finished
    finally:
        worker.stop()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ten_thousand_jobs_in_flight_redraw_at_the_throttled_rate(env) -> None:  # type: ignore[no-untyped-def]
    orq, _, _ = env
    later = f"dez_mil_{uuid.uuid4().hex[:6]}"
    lote = orq.iniciar_coletas(later, [{"n": i} for i in range(10_000)], progress=False)
    board = Painel(orq, [Plugin("escavador", later, pagina, "tests")])
    view = LoteView(lote)
    sent: list[str] = []  # every change of a widget value is one message to the front end
    for widget in (board.status, board.erros, view.status):
        widget.observe(lambda change: sent.append(change["new"]), names="value")
    assert "0/10000 done" in view.status.value and "queued</b> 10000" in board.status.value
    started = time.monotonic()
    worker = BackgroundWorker(orq._core.url, later)
    try:
        wait_until(lambda: view.finished, timeout=240)
    finally:
        worker.stop()
    elapsed = time.monotonic() - started
    wait_until(lambda: "10000/10000 done" in board.status.value, timeout=10)
    # Thousands of result batches arrived; each view redrew at most once per interval.
    assert len(sent) <= 3 * (elapsed / ticker(orq).interval + 3), (len(sent), elapsed)
    assert view.bar.value == 10_000 and "jobs/s" in view.status.value and "ETA" in view.status.value
    board.close()


def test_resultados_filters_by_alvo_status_and_time_range(env) -> None:  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime, timedelta

    orq, nome, _ = env
    old = orq.iniciar_coletas(nome, [{"n": 1}, {"falhar": True}], progress=False).wait(20)
    ids = [j.message_id for j in old]
    orq._core.store._conn().execute(
        f"UPDATE jobs SET enviado_em = enviado_em - 7200 WHERE message_id IN ({','.join('?' * len(ids))})",
        ids,
    )
    orq.iniciar_coletas(nome, [{"n": 2}, {"n": 3}, {"falhar": True}], progress=False).wait(20)
    orq.iniciar_coleta(f"outro_{nome}", {"n": 9})  # another alvo, never consumed

    every = orq.resultados()
    assert len(every) == 6 and str(every["iniciado_em"].dtype) == "datetime64[ns, UTC]"
    assert str(every["duracao"].dtype).startswith("timedelta64") and "payload.n" in every.columns
    assert len(orq.resultados(nome)) == 5
    assert sorted(orq.resultados(nome, status="ok")["payload.n"]) == [1, 2, 3]
    assert len(orq.resultados(nome, status=["erro", "dead-lettered"])) == 2
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    assert sorted(orq.resultados(nome, status="ok", desde=hour_ago)["payload.n"]) == [2, 3]
    assert orq.resultados(nome, ate=hour_ago)["message_id"].tolist() == ids
    assert orq.resultados(nome, desde=datetime.now(UTC) + timedelta(minutes=1)).empty


def test_job_and_lote_are_plain_text_without_ipywidgets() -> None:
    import subprocess

    code = (
        "import sys; sys.modules['ipywidgets'] = None\n"  # as if it were not installed
        "from orquestrador import Orquestrador\n"
        "with Orquestrador('memory://sem-widgets') as orq:\n"
        "    job = orq.iniciar_coleta('x', {'n': 1})\n"
        "    lote = orq.iniciar_coletas('x', [{'n': 2}], progress=False)\n"
        "    print(job._repr_mimebundle_()); print(lote._repr_mimebundle_())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    job_bundle, lote_bundle = done.stdout.splitlines()
    assert job_bundle.startswith("{'text/plain': \"Job(alvo='x'") and "status='queued'" in job_bundle
    assert lote_bundle == "{'text/plain': \"Lote(1 jobs: {'queued': 1})\"}"
