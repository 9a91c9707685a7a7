"""The README's first notebook example runs as written on a fresh machine (no internet)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from orquestrador import detached
from orquestrador.brokers import embedded

README = Path(__file__).parent.parent / "README.md"


@pytest.mark.nats
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_the_first_notebook_example_works_as_written(tmp_path: Path) -> None:
    section = README.read_text().split("## From a notebook", 1)[1]
    example = section.split("```python\n", 1)[1].split("```", 1)[0]
    # What its comments promise, checked after it ran unchanged.
    check = (
        "assert (job.status, job.result['titulo']) == ('ok', 'Mercado Municipal — Início')\n"
        "assert len(df) == 4 and set(df['status'].astype(str)) == {'ok'}, df\n"
        "assert set(orq.rastrear(job.correlation_id)['evento']) >= {'iniciar_coleta', 'resultado_coleta'}\n"
        "orq.close()\n"
    )
    home = tmp_path / ".orquestrador"
    env = {**os.environ, "ORQ_HOME": str(home)}
    env.pop("ORQ_BROKER_URL", None)
    try:
        done = subprocess.run(
            [sys.executable, "-c", example + check], cwd=tmp_path, env=env,
            capture_output=True, text=True, timeout=150,
        )  # fmt: skip
    finally:
        detached.stop(home)
        embedded.stop(home)
    assert done.returncode == 0, done.stderr[-3000:]


def test_the_layout_section_is_a_few_lines_naming_directories_that_exist() -> None:
    """The tree speaks for itself: the README only points at it, and must not point wrong."""
    import re

    section = README.read_text().split("## Layout", 1)[1].split("\n## ", 1)[0]
    block = section.split("```", 2)[1].strip("\n").splitlines()
    assert len(block) <= 8, block
    root = README.parent
    named = {m.group(1) for line in block for m in re.finditer(r"([a-z_]+)/", line)}
    packages = {"brokers", "facade", "worker", "store", "cli", "notebook"}
    missing = [n for n in sorted(named) if not ((root / n).is_dir() or (root / "orquestrador" / n).is_dir()
                                              or (root / "tests" / n).is_dir())]  # fmt: skip
    assert missing == [], missing
    assert packages <= named, packages - named
