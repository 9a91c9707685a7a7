"""The chaos suite's report: every scenario records a row, and the session prints them as a table.

``pytest tests/chaos`` (or the whole suite) ends with a "chaos summary" section: for each broker
and scenario, jobs sent, results received, duplicate result deliveries, handler runs, lost jobs
(always 0, or the test failed), dead letters and their reasons. The table is also written to
``chaos-summary.md`` in pytest's base temporary directory, or to ``$ORQ_CHAOS_SUMMARY``.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from tests.chaos.harness import Linha
from tests.conftest import broker_url_for
from tests.contract.test_worker_processes import REAL_BROKERS

ROWS = pytest.StashKey[list[Linha]]()


@pytest.fixture(params=REAL_BROKERS)
def broker_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def url(broker_name: str, request: pytest.FixtureRequest) -> str:
    """The machine's (or session's) server for ``broker_name``."""
    return broker_url_for(broker_name, request)


@pytest.fixture
def suffix() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
def run_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where worker processes started by this test log each handler run (plugins_caos)."""
    path = tmp_path / "runs.log"
    monkeypatch.setenv("ORQ_CHAOS_LOG", str(path))
    return path


@pytest.fixture
def report(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """``report(linha)`` adds a row to the session's chaos summary (record before asserting)."""
    rows = request.config.stash.setdefault(ROWS, [])
    return rows.append


def render(rows: list[Linha]) -> str:
    header = ["broker", "scenario", "sent", "results", "duplicates", "handler runs", "lost",
              "dead letters", "reasons", "s"]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in sorted(rows, key=lambda r: (r.cenario, r.broker)):
        reasons = "; ".join(f"{k} ×{v}" for k, v in r.motivos.items()) or "-"
        cells = [r.broker, r.cenario + (f" ({r.nota})" if r.nota else ""), r.enviados, r.resultados,
                 r.duplicados, "-" if r.execucoes is None else r.execucoes, r.perdidos, r.mortos,
                 reasons, f"{r.segundos:.0f}"]  # fmt: skip
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    rows = config.stash.get(ROWS, [])
    if not rows:
        return
    table = render(rows)
    target = os.environ.get("ORQ_CHAOS_SUMMARY")
    path = Path(target) if target else config._tmp_path_factory.getbasetemp() / "chaos-summary.md"  # type: ignore[attr-defined]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# Chaos summary\n\n" + table + "\n")
    terminalreporter.write_sep("=", "chaos summary")
    terminalreporter.write_line(table)
    terminalreporter.write_line(f"(written to {path})")
