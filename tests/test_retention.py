"""Store retention: finished jobs go by age or count, with their records; unfinished chains stay whole."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orquestrador.brokers.support.limits import DlqLimits
from orquestrador.cli import app
from orquestrador.envelope import Envelope, Erro, nova
from orquestrador.errors import ConfigError
from orquestrador.eventos import EventoJob
from orquestrador.settings import parse_duration
from orquestrador.store import Store
from orquestrador.store.retention import Retencao

DAY = 86400.0


def _launch(store: Store, correlation_id: str | None = None) -> Envelope:
    job = nova("iniciar_coleta", {"n": 1}, alvo="http", correlation_id=correlation_id)
    store.record_sent([job], "escavador_http")
    store.record_events([EventoJob("iniciado", job.correlation_id, job.message_id or "", "http", "w1", 1)])
    return job


def _finish(store: Store, job: Envelope, at: float, *, erro: bool = False, partes: int = 0) -> None:
    when = datetime.fromtimestamp(at, UTC)
    for n in range(partes):
        part = nova("resultado_coleta", {"parte": n}, alvo="http", correlation_id=job.correlation_id,
                    causation_id=job.message_id)  # fmt: skip
        part = part.with_changes(status="ok", parcial=True, parte=n)
        store.record_results([part])
    res = nova("resultado_coleta", {"ok": True}, alvo="http", correlation_id=job.correlation_id,
               causation_id=job.message_id)  # fmt: skip
    update: dict = {"status": "ok", "timestamp": when}
    if erro:
        update.update(status="erro", erro=Erro(tipo="HTTPError", mensagem="503"))
    store.record_results([res.with_changes(**update)])


def _rows(path: Path, table: str, correlation_id: str) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute(
            f"SELECT COUNT(*) FROM {table} WHERE correlation_id = ?", (correlation_id,)
        ).fetchone()[0]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "orquestrador.db")
    yield s
    s.close()


def test_prune_by_age_removes_old_finished_jobs_with_their_records(store: Store):
    now = time.time()
    old = _launch(store)
    _finish(store, old, now - 10 * DAY, partes=2)
    recent = _launch(store)
    _finish(store, recent, now - 60)
    assert _rows(store.path, "partes", old.correlation_id) == 2
    assert _rows(store.path, "eventos", old.correlation_id) == 1

    report = store.prune(max_age=7 * DAY)

    assert report.jobs == 1
    assert store.job(old.message_id or "") is None
    for table in ("envelopes", "eventos", "partes"):
        assert _rows(store.path, table, old.correlation_id) == 0, table
    assert report.envelopes == 4 and report.eventos == 1 and report.partes == 2  # request, 2 parts, result
    assert store.job(recent.message_id or "").estado == "ok"
    assert _rows(store.path, "envelopes", recent.correlation_id) == 2
    assert store.trace(recent.correlation_id)


def test_prune_by_count_keeps_the_newest_finished_and_every_unfinished_job(store: Store):
    now = time.time()
    finished = []
    for i in range(6):
        job = _launch(store)
        _finish(store, job, now - 100 + i, erro=(i == 1))
        finished.append(job)
    queued = [_launch(store) for _ in range(3)]  # never finished, launched before the newest ones

    report = store.prune(max_jobs=2)

    assert report.jobs == 4
    kept = {j.message_id for j in finished if store.job(j.message_id or "") is not None}
    assert kept == {finished[4].message_id, finished[5].message_id}
    for job in queued:
        assert store.job(job.message_id or "").estado == "running"
    assert store.prune(max_jobs=2).jobs == 0  # already within the bound


def test_prune_never_touches_a_chain_that_still_has_unfinished_jobs(store: Store):
    now = time.time()
    parent = _launch(store)
    _finish(store, parent, now - 30 * DAY)
    child = _launch(store, correlation_id=parent.correlation_id)  # the chain goes on: child running
    lone = _launch(store)
    _finish(store, lone, now - 30 * DAY)

    report = store.prune(max_age=DAY, max_jobs=1)

    assert store.job(parent.message_id or "").estado == "ok"
    assert store.job(child.message_id or "").estado == "running"
    assert _rows(store.path, "envelopes", parent.correlation_id) == 3
    assert report.jobs == 1 and report.protected == 1
    assert store.job(lone.message_id or "") is None

    _finish(store, child, now - 2 * DAY)  # the chain ends: now all of it is old enough
    assert store.prune(max_age=DAY).jobs == 2
    for table in ("jobs", "envelopes", "eventos"):
        assert _rows(store.path, table, parent.correlation_id) == 0, table


def test_prune_in_many_chunks_reaches_every_old_job(store: Store):
    now = time.time()
    jobs = [nova("iniciar_coleta", {"i": i}, alvo="http") for i in range(250)]
    store.record_sent(jobs, "escavador_http")
    results = [
        nova("resultado_coleta", {}, alvo="http", correlation_id=j.correlation_id, causation_id=j.message_id)
        .with_changes(status="ok", timestamp=datetime.fromtimestamp(now - DAY - i, UTC))
        for i, j in enumerate(jobs)
    ]  # fmt: skip
    store.record_results(results)
    assert store.prunable(max_age=3600) == 250

    report = store.prune(max_age=3600, chunk=40)

    assert report.jobs == 250 and report.envelopes == 500
    assert store.count_by_state() == {}


def test_prune_without_limits_keeps_everything(store: Store, monkeypatch: pytest.MonkeyPatch):
    job = _launch(store)
    _finish(store, job, time.time() - 365 * DAY)
    monkeypatch.delenv("ORQ_RETENTION_AGE", raising=False)
    monkeypatch.delenv("ORQ_RETENTION_JOBS", raising=False)
    policy = Retencao.from_env()
    assert not policy.active
    assert store.prune(None, None).jobs == 0
    assert store.job(job.message_id or "").estado == "ok"


@pytest.mark.parametrize(("text", "seconds"), [("3600", 3600), ("90s", 90), ("15m", 900), ("12h", 43200),
                                               ("7d", 604800), ("1.5h", 5400), ("2w", 1209600)])  # fmt: skip
def test_durations(text: str, seconds: float):
    assert parse_duration(text, "X") == seconds


@pytest.mark.parametrize("bad", ["7 days", "abc", "-5", "0", "1y", "h"])
@pytest.mark.parametrize("setting", ["ORQ_RETENTION_AGE", "ORQ_DLQ_MAX_AGE"])
def test_bad_durations_are_config_errors_naming_the_setting(bad: str, setting: str, monkeypatch):
    monkeypatch.setenv(setting, bad)
    with pytest.raises(ConfigError, match=setting):
        Retencao.from_env() if setting == "ORQ_RETENTION_AGE" else DlqLimits.from_env()


@pytest.mark.parametrize("setting", ["ORQ_RETENTION_JOBS", "ORQ_DLQ_MAX_MESSAGES"])
def test_bad_counts_are_config_errors_naming_the_setting(setting: str, monkeypatch):
    for bad in ("ten", "-1", "0", "1.5"):
        monkeypatch.setenv(setting, bad)
        with pytest.raises(ConfigError, match=setting):
            Retencao.from_env() if setting == "ORQ_RETENTION_JOBS" else DlqLimits.from_env()


def test_orchestrator_refuses_a_bad_retention_setting(monkeypatch):
    from orquestrador.orchestrator import AsyncOrquestrador

    monkeypatch.setenv("ORQ_RETENTION_AGE", "forever")
    with pytest.raises(ConfigError, match="ORQ_RETENTION_AGE"):
        AsyncOrquestrador("memory://x")


async def test_orchestrator_prunes_automatically_when_configured(tmp_path: Path):
    from orquestrador.orchestrator import AsyncOrquestrador
    from tests.conftest import eventually

    home = tmp_path / "h"
    store = Store(home / "orquestrador.db")
    old = _launch(store)
    _finish(store, old, time.time() - 3 * DAY)
    running = _launch(store)
    policy = Retencao(max_age="1d", interval=0.1)
    orq = AsyncOrquestrador(f"memory://{uuid.uuid4().hex}", home=home, retencao=policy)
    await orq.start()
    try:
        await eventually(lambda: store.job(old.message_id or "") is None, timeout=30)
        later = _launch(store)  # finished after start: the next periodic pass removes it too
        _finish(store, later, time.time() - 2 * DAY)
        await eventually(lambda: store.job(later.message_id or "") is None, timeout=30)
        assert store.job(running.message_id or "").estado == "running"
    finally:
        await orq.close()
        store.close()


async def test_orchestrator_without_retention_keeps_everything(tmp_path: Path, monkeypatch):
    import asyncio

    from orquestrador.orchestrator import AsyncOrquestrador

    monkeypatch.delenv("ORQ_RETENTION_AGE", raising=False)
    monkeypatch.delenv("ORQ_RETENTION_JOBS", raising=False)
    home = tmp_path / "h"
    store = Store(home / "orquestrador.db")
    old = _launch(store)
    _finish(store, old, time.time() - 300 * DAY)
    orq = AsyncOrquestrador(f"memory://{uuid.uuid4().hex}", home=home)
    await orq.start()
    try:
        await asyncio.sleep(0.5)
        assert store.job(old.message_id or "").estado == "ok"
    finally:
        await orq.close()
        store.close()


# -- orq store prune ---------------------------------------------------------------------------


def _cli_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[Store, Envelope, Envelope]:
    home = tmp_path / "cli"
    monkeypatch.setenv("ORQ_HOME", str(home))
    store = Store(home / "orquestrador.db")
    old, new = _launch(store), _launch(store)
    _finish(store, old, time.time() - 10 * DAY, partes=1)
    _finish(store, new, time.time())
    return store, old, new


def test_cli_store_prune_prints_what_it_deleted(monkeypatch, tmp_path: Path):
    store, old, new = _cli_store(monkeypatch, tmp_path)
    result = CliRunner().invoke(app, ["store", "prune", "--older-than", "7d", "--yes"])
    assert result.exit_code == 0, result.output
    assert "pruned 1 jobs, 3 envelopes, 1 events, 1 parts" in result.output
    assert store.job(old.message_id or "") is None
    assert store.job(new.message_id or "") is not None


def test_cli_store_prune_json_and_keep(monkeypatch, tmp_path: Path):
    store, old, _ = _cli_store(monkeypatch, tmp_path)
    result = CliRunner().invoke(app, ["store", "prune", "--keep", "1", "--yes", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert (data["jobs"], data["envelopes"], data["eventos"], data["partes"]) == (1, 3, 1, 1)
    assert data["store"].endswith("orquestrador.db")
    assert store.job(old.message_id or "") is None


def test_cli_store_prune_asks_first_and_a_no_keeps_everything(monkeypatch, tmp_path: Path):
    store, old, _ = _cli_store(monkeypatch, tmp_path)
    refused = CliRunner().invoke(app, ["store", "prune", "--older-than", "1d"])  # no terminal to ask on
    assert refused.exit_code != 0 and "--yes" in str(refused.exception)
    monkeypatch.setattr("orquestrador.cli.store._can_ask", lambda: True)
    result = CliRunner().invoke(app, ["store", "prune", "--older-than", "1d"], input="n\n")
    assert result.exit_code == 1
    assert "Delete 1 finished jobs" in result.output
    assert store.job(old.message_id or "") is not None


def test_cli_store_prune_uses_the_settings_or_says_what_is_missing(monkeypatch, tmp_path: Path):
    store, old, _ = _cli_store(monkeypatch, tmp_path)
    monkeypatch.delenv("ORQ_RETENTION_AGE", raising=False)
    monkeypatch.delenv("ORQ_RETENTION_JOBS", raising=False)
    result = CliRunner().invoke(app, ["store", "prune", "--yes"])
    assert result.exit_code != 0
    assert "--older-than" in str(result.exception)
    monkeypatch.setenv("ORQ_RETENTION_JOBS", "1")
    result = CliRunner().invoke(app, ["store", "prune", "--yes"])
    assert result.exit_code == 0, result.output
    assert store.job(old.message_id or "") is None
    bad = CliRunner().invoke(app, ["store", "prune", "--older-than", "soon", "--yes"])
    assert isinstance(bad.exception, ConfigError) and "--older-than" in str(bad.exception)


def test_pruning_part_of_a_finished_chain_keeps_the_records_of_its_newer_jobs(store: Store):
    now = time.time()
    first = _launch(store)
    _finish(store, first, now - 10 * DAY, partes=2)
    second = _launch(store, correlation_id=first.correlation_id)
    _finish(store, second, now - 60, partes=1)
    assert _rows(store.path, "envelopes", first.correlation_id) == 7

    report = store.prune(max_age=DAY)

    assert report.jobs == 1 and report.envelopes == 4 and report.partes == 2 and report.eventos == 1
    assert store.job(first.message_id or "") is None
    assert store.parts(second.message_id or "") == [{"parte": 0}]
    ids = {r["message_id"] for r in store.trace(first.correlation_id)}
    assert second.message_id in ids and first.message_id not in ids
    assert len([r for r in store.trace(first.correlation_id) if r["tipo"] == "envelope"]) == 3


def test_facade_takes_a_retention_policy(tmp_path: Path):
    from orquestrador import Orquestrador

    home = tmp_path / "f"
    store = Store(home / "orquestrador.db")
    jobs = [_launch(store) for _ in range(3)]
    for i, job in enumerate(jobs):
        _finish(store, job, time.time() - 100 + i)
    policy = Retencao(max_jobs=1, interval=0.1)
    with Orquestrador(f"memory://{uuid.uuid4().hex}", home=home, retencao=policy) as orq:
        assert orq._core.retencao == policy
        deadline = time.monotonic() + 30
        while store.count_by_state() != {"ok": 1} and time.monotonic() < deadline:
            time.sleep(0.05)
    assert store.count_by_state() == {"ok": 1}
    assert store.job(jobs[2].message_id or "") is not None  # the newest one stays
    store.close()


def test_orq_store_prune_as_a_command(monkeypatch, tmp_path: Path):
    from tests.test_cli_ops import orq

    store, old, new = _cli_store(monkeypatch, tmp_path)
    bad = orq("store", "prune", "--older-than", "soon", "--yes")
    assert bad.returncode == 2 and "--older-than='soon' is not a duration" in bad.stderr
    refused = orq("store", "prune", "--keep", "1")  # stdin is not a terminal
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert store.job(old.message_id or "") is not None
    done = orq("store", "prune", "--keep", "1", "--yes")
    assert done.returncode == 0, done.stderr
    assert "pruned 1 jobs" in done.stdout
    assert store.job(old.message_id or "") is None and store.job(new.message_id or "") is not None


def test_prune_keeps_a_running_batch_whole_so_its_count_stays_right(store: Store):
    now = time.time()
    jobs = [nova("iniciar_coleta", {"i": i}, alvo="http") for i in range(4)]
    store.record_sent(jobs, "escavador_http", lote="lote-1")
    for i, job in enumerate(jobs[:3]):
        _finish(store, job, now - 10 * DAY + i)

    report = store.prune(max_age=DAY)

    assert report.jobs == 0 and report.protected == 3
    assert store.count_lote("lote-1") == {"ok": 3, "queued": 1}
    _finish(store, jobs[3], now - 5 * DAY)
    assert store.prune(max_age=DAY).jobs == 4
    assert store.count_lote("lote-1") == {}
