"""Every example in examples/ runs from start to end (examples rot silently otherwise).

Each runs as a user would, ``python examples/NAME.py``, in a fresh directory, on the session's
NATS server (``ORQ_BROKER_URL``) with a results queue of its own; ``launch_and_wait`` also on
the embedded server it starts by default, and ``each_broker`` on every session broker.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from orquestrador.brokers import embedded
from tests.conftest import BROKERS, broker_url_for

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
# crawl_loja needs a browser: tests/escavadores/test_exemplo_crawl.py runs it.
OWN = sorted(p.stem for p in EXAMPLES.glob("*.py") if not p.stem.startswith("_") and p.stem != "crawl_loja")
BUDGET = 90.0


def run(name: str, home: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "ORQ_HOME": str(home),
        "ORQ_RESULTS_QUEUE": f"ex_{uuid.uuid4().hex[:10]}",
        **env,
    }
    return subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py")], capture_output=True, text=True, timeout=BUDGET,
        cwd=home.parent, env=environment,
    )  # fmt: skip


def test_there_are_at_least_ten() -> None:
    assert len(OWN) >= 10, OWN


@pytest.mark.nats
@pytest.mark.parametrize("name", [n for n in OWN if n != "each_broker"])
def test_example_runs(name: str, nats_url: str, tmp_path: Path) -> None:
    done = run(name, tmp_path / ".orquestrador", {"ORQ_BROKER_URL": nats_url})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.nats
def test_the_first_example_runs_on_the_embedded_server_by_default(tmp_path: Path) -> None:
    home = tmp_path / ".orquestrador"
    try:
        done = run("launch_and_wait", home, {"ORQ_BROKER_URL": ""})
    finally:
        embedded.stop(home)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "olá, Ana!" in done.stdout


@pytest.mark.parametrize("name", BROKERS)
def test_the_same_job_on_each_broker(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    url = broker_url_for(name, request)
    if url.startswith("memory://"):
        url = "memory://"
    done = run("each_broker", tmp_path / ".orquestrador", {"ORQ_EXAMPLE_BROKERS": url})
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{url.split(':', 1)[0]}: ok" in done.stdout
