"""The notebook widgets: construction, escaping, throttled refreshes, live counts."""

from __future__ import annotations

import re
import sys
import time
import uuid

import pytest

from orquestrador.notebook import Painel, Rastreio, rastreio
from orquestrador.notebook._live import esc, ticker
from orquestrador.notebook.jobs import JobView, LoteView
from orquestrador.plugins import Plugin
from orquestrador.store.stats import Throughput, fmt_seconds
from tests.notebook.helpers import ESCAPED, EVIL, BackgroundWorker, pagina, wait_until


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
    # The correlation_id, the message, and the message again at the end of the folded traceback.
    assert bad_view.status.value.count(ESCAPED) == 3 and "<img" not in bad_view.status.value
    trace = bad.erro["traceback"]
    assert trace.startswith("Traceback") and "in pagina\n    raise PermanentFailure" in trace
    summary = "<details class='orq-traceback'><summary>remote traceback</summary>"
    folded = re.search(re.escape(summary) + "<pre[^>]*>(.*)</pre>", bad_view.status.value, re.S)
    assert folded and "in pagina" in folded.group(1)

    trace = Rastreio(orq, job.correlation_id)
    assert ESCAPED in trace.timeline.value and "<img" not in trace.timeline.value
    assert "resultado_coleta" in trace.timeline.value
    assert re.search(r"<td>\d+ ms</td><td>" + re.escape(ESCAPED) + "</td></tr>", trace.timeline.value), (
        "the result's row shows how long the job took and the page title"
    )
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


def test_rates_and_durations_read_with_units() -> None:
    assert Throughput(2.0, 75.0).html() == "2.0 jobs/s · ETA 1 min 15 s"
    assert Throughput(12.345, 0.0, average=True).html() == "avg 12.3 jobs/s"
    assert Throughput(0.0, None).html() == "0.0 jobs/s · ETA ?"
    assert [fmt_seconds(s) for s in (4.4, 3725.0)] == ["4 s", "1 h 02 min"]


def test_workers_never_import_ipywidgets_or_pandas() -> None:
    import subprocess

    code = (
        "import sys, orquestrador, orquestrador.worker, orquestrador.cli, orquestrador.facade;"
        "bad = [m for m in ('ipywidgets', 'pandas') if m in sys.modules]; print(bad); sys.exit(bool(bad))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


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
    assert view.bar.value == 10_000 and re.search(r"avg \d+\.\d jobs/s$", view.status.value)
    board.close()


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
