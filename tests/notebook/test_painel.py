"""The dashboard: launcher, time range, queue stats, dead letters, and its last redraw."""

from __future__ import annotations

import asyncio
import html
import importlib
import time
import uuid

from pydantic import BaseModel

from orquestrador.notebook import Painel, painel
from orquestrador.notebook._live import ticker
from orquestrador.plugins import Plugin
from tests.notebook.helpers import ESCAPED, EVIL, pagina, wait_until


def test_payload_errors_show_in_the_widget_and_launch_n_copies(env) -> None:  # type: ignore[no-untyped-def]
    orq, _, plugin = env
    board = painel(orq, [plugin])
    form = board.lancador
    form.payload.value = '{"titulo": '
    assert board.launch() is None and "invalid JSON" in form.mensagem.value
    form.payload.value = f'["{EVIL}"]'
    assert board.launch() is None and "JSON object" in form.mensagem.value
    assert "<img" not in form.mensagem.value
    form.payload.value = '{"titulo": "x"}'
    form.copias.value = 25
    lote = board.launch()
    assert lote is not None and len(lote) == 25 and "launched 25" in form.mensagem.value
    shown = html.unescape(form.lote.children[0].children[0].value)  # the batch's widget, in the form
    assert form.launched is lote and f'orq.lote("{lote.id}")' in shown
    wait_until(lambda: orq._core.store.count_by_state().get("ok") == 25)
    board.refresh()
    assert "25/25 done" in board.status.value and board.bar.value == 25
    board.close()


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
    assert board.launch() is None and "url: Field required" in form.mensagem.value
    assert orq._core.store.count_by_state() == {}, "nothing leaves when a payload is invalid"

    form.fonte.value = 1  # one job per row, but n is not a url: row 0 is refused before any launch
    assert form.copias.disabled
    assert board.launch() is None and "row 0: " in form.mensagem.value

    form.fonte.value = 0
    form.payload.value = f'{{"titulo": "{EVIL}"}}'
    assert len(board.launch() or ()) == 12
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
    # Said before anything is sent: the form names the queue and the command that serves it.
    unserved = f"no worker consumes queue {idle.fila}"
    aviso = board.lancador.aviso.value
    assert unserved in aviso and f"orq worker escavador {idle.nome}" in aviso
    assert len(board.launch() or ()) == 7
    # Nobody consumes that queue: the refresh thread alone must show the 7 waiting in it.
    wait_until(lambda: [(s.queue, s.depth) for s in board.stats] == [(idle.fila, 7)], timeout=30)
    assert f"<code>{idle.fila}</code></td><td>7</td>" in board.filas.value
    assert "0/7 done" in board.status.value and "queued</b> 7" in board.status.value
    wait_until(lambda: unserved in board.avisos.value)  # the dashboard says it too, in the jobs view
    board.close()


def test_a_served_queue_raises_no_warning(env) -> None:  # type: ignore[no-untyped-def]
    orq, nome, plugin = env
    board = Painel(orq, [plugin])
    orq.iniciar_coletas(nome, [{"n": i} for i in range(5)], progress=False).wait(20)
    board._stats_at = 0.0
    board.refresh()
    assert board.lancador.aviso.value == "" and board.avisos.value == ""
    board.close()


def test_a_broker_that_does_not_answer_spoils_only_the_queue_stats(env, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    module = importlib.import_module("orquestrador.notebook.painel")  # the package's name is the function
    orq, nome, plugin = env
    orq.iniciar_coletas(nome, [{"n": i} for i in range(3)], progress=False).wait(20)
    board = Painel(orq, [plugin])
    broker = orq._core.broker

    async def stuck(fila: str) -> None:
        await asyncio.sleep(3600)

    monkeypatch.setattr(module, "STATS_TIMEOUT", 0.5)
    monkeypatch.setattr(broker, "stats", stuck)
    with ticker(orq)._drawing:  # no redraw of the refresh thread in between (it may have one going)
        board._stats_at = 0.0
        board.refresh()
        assert "3/3 done" in board.status.value and "refresh failed" not in board.status.value
        assert "queue stats unavailable: TimeoutError" in board.filas.value
    board.close()


def test_an_idle_dashboard_resends_its_counts_for_a_front_end_that_missed_them(env) -> None:  # type: ignore[no-untyped-def]
    orq, nome, plugin = env
    orq.iniciar_coletas(nome, [{"n": i} for i in range(4)], progress=False).wait(20)
    board = Painel(orq, [plugin])
    sent: list[dict] = []
    board.status.comm.send = lambda data=None, **kw: sent.append(data)  # what would go to the browser
    ticker(orq).idle = 0.2  # nothing runs: every pass of the refresh thread is an idle one
    updates = lambda: [d["state"]["value"] for d in sent if d and d.get("method") == "update"]  # noqa: E731
    wait_until(lambda: len(updates()) >= 2, timeout=20)
    assert all("4/4 done" in value for value in updates())
    board.close()


def test_the_payload_editor_says_what_is_wrong_before_launch(env) -> None:  # type: ignore[no-untyped-def]
    orq, nome, _ = env
    board = painel(orq, [Plugin("escavador", nome, pagina, "tests", schema=Pagina)])
    form = board.lancador
    assert "url: Field required" in form.mensagem.value, "the empty payload is checked as shown"
    form.payload.value = '{"url": "http://127.0.0.1/x",'  # what the editor sends when it loses focus
    assert "invalid JSON" in form.mensagem.value
    form.payload.value = '{"url": 5}'
    assert "url: Input should be a valid string" in form.mensagem.value
    form.copias.value = 1000
    form.payload.value = '{"url": "http://127.0.0.1/x"}'
    assert "ready: 1000 valid payload(s)" in form.mensagem.value
    assert orq._core.store.count_by_state() == {}, "checking sends nothing"
    board.close()


def test_the_schedules_tab_shows_each_schedule_and_its_next_firing(env) -> None:  # type: ignore[no-untyped-def]
    orq, nome, plugin = env
    board = Painel(orq, [plugin])
    board._stats_at = 0.0
    board.refresh()
    assert "no schedules" in board.agendas.value
    hourly = orq.agendar("escavador", nome, {"url": EVIL}, cada="1h", id="de-hora-em-hora")
    daily = orq.agendar("escavador", nome, {}, cron="0 6 * * *", fuso="America/Sao_Paulo", id="diaria")
    orq.pausar_agenda(daily.id)
    board._stats_at = 0.0
    board.refresh()
    shown = board.agendas.value
    rows = {row.split("</code>")[0]: row for row in shown.split("<tr><td><code>")[1:]}
    nxt = time.strftime("%Y-%m-%d %H:%M", time.gmtime(hourly.criada_em + 3600))
    assert "cada 1h" in rows[hourly.id] and "active" in rows[hourly.id] and nxt in rows[hourly.id]
    assert "cron 0 6 * * * America/Sao_Paulo" in rows[daily.id] and "paused" in rows[daily.id]
    assert "<img" not in shown
    board.close()
    orq.remover_agenda(hourly.id)
    orq.remover_agenda(daily.id)


def test_the_launcher_sends_priority_delay_and_deadline(env) -> None:  # type: ignore[no-untyped-def]
    orq, _, plugin = env
    board = painel(orq, [plugin])
    form = board.lancador
    form.payload.value = '{"titulo": "x"}'
    form.atraso.value = 5.0
    form.ttl.value = 2.0
    assert not form.check() and "not after executar_em" in form.mensagem.value
    assert board.launch() is None, "nothing leaves with a deadline before its start"
    form.prioridade.value, form.atraso.value, form.ttl.value = 9, 0.6, 60.0
    assert form.check()
    lote = board.launch()
    assert lote is not None and len(lote) == 1
    wait_until(lambda: orq._core.store.count_by_state().get("ok") == 1)
    row = lote[0].record()
    assert row is not None and row.iniciado_em is not None and row.enviado_em is not None
    assert row.iniciado_em - row.enviado_em >= 0.55, "started before its atraso"
    board.close()


def test_the_launcher_makes_a_schedule_checked_first_and_the_schedules_tab_shows_it(env) -> None:  # type: ignore[no-untyped-def]
    orq, nome, _ = env
    board = painel(orq, [Plugin("escavador", nome, pagina, "tests", schema=Pagina)])
    form = board.lancador
    form.payload.value = '{"url": "http://127.0.0.1/x"}'
    form.repetir.value = "cron"
    assert form.lancar.description == "Schedule" and form.atraso.disabled
    assert board.launch() is None and "say when it repeats" in form.mensagem.value
    form.quando.value = "0 6 * *"
    assert not form.check() and "not a cron expression" in form.mensagem.value
    form.quando.value = "0 6 * * *"
    form.fuso.value = f"Mars/{EVIL}"
    assert board.launch() is None and "not a known time zone" in form.mensagem.value
    assert "<img" not in form.mensagem.value
    form.fuso.value = "America/Sao_Paulo"
    form.payload.value = '{"url": 5}'
    assert board.launch() is None and "url: Input should be a valid string" in form.mensagem.value
    form.payload.value = '{"url": "http://127.0.0.1/x"}'
    form.copias.value = 3
    assert board.launch() is None and "one payload per firing" in form.mensagem.value
    form.copias.value = 1
    assert orq.agendas().empty, "nothing is saved while the form refuses"

    form.prioridade.value, form.ttl.value = 6, 600.0
    assert form.check() and "first firing" in form.mensagem.value and "09:00:00Z" in form.mensagem.value
    agenda = board.launch()
    assert agenda is not None and agenda is form.agendada
    assert (agenda.alvo, agenda.payload, agenda.prioridade, agenda.ttl) == (
        nome,
        {"url": "http://127.0.0.1/x"},
        6,
        600.0,
    )
    assert f"scheduled <code>{agenda.id}</code>" in form.mensagem.value
    assert agenda.responder_para == orq._core.responder_para  # its results come back here
    assert agenda.id in board.agendas.value and "cron 0 6 * * * America/Sao_Paulo" in board.agendas.value
    assert orq._core.store.count_by_state() == {}, "a schedule launches nothing now"

    form.repetir.value = "agora"
    assert form.lancar.description == "Launch" and form.quando.disabled
    board.close()
    orq.remover_agenda(agenda.id)
