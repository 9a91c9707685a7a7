"""Run every example notebook headlessly, top to bottom, against the embedded NATS broker.

Why: notebooks rot silently. These run them with nbclient and real ``orq worker`` processes, fail
on any cell error, and stop whatever embedded nats-server a notebook left behind.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from orquestrador import detached, settings
from orquestrador.brokers import embedded

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = sorted((Path(__file__).parent.parent.parent / "notebooks").glob("*.ipynb"))
BUDGET = 60.0  # seconds per notebook, kernel start included


def test_the_three_notebooks_exist() -> None:
    assert [p.name for p in NOTEBOOKS] == ["01_lancar_coletas.ipynb", "02_workers.ipynb", "03_analise.ipynb"]


@pytest.mark.nats
@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path: Path, tmp_path: Path) -> None:
    home = settings.home()  # the kernel inherits ORQ_HOME: this test's own (tests/conftest.py)
    book = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        book, timeout=BUDGET, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    started = time.monotonic()
    try:
        client.execute()
    finally:
        left = detached.stop(home)  # what a failed run left: workers, the demo site
        embedded.stop(home)
    elapsed = time.monotonic() - started
    errors = [o for c in book.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    assert elapsed < BUDGET, f"{path.name} took {elapsed:.1f}s"
    assert left == [], "the notebook's last cell stops the processes it started"
    assert (home / "orquestrador.db").exists(), "the store stays for the next run"
    printed = "".join(o.get("text", "") for c in book.cells if c.cell_type == "code" for o in c.outputs)
    assert "serving escavador_http" not in printed, "worker log lines stay in their log files"
    if path.stem == "03_analise":  # the plot is of the batch's pages: the warm-up job is not one
        shown = book.cells[-4].outputs[-1]["data"]["text/plain"]
        assert "index.html" in shown and "127.0.0.1" not in shown, shown
