"""No result is lost once it is recorded: the store survives resultados(), and a killed kernel.

Arrow's SQLite driver bundles a second SQLite library; opened in the orchestrator's process it
released Python's SQLite locks and deleted the live WAL, so results recorded after the first
``resultados()`` vanished when the process died. These pin down that it never happens again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from orquestrador import Orquestrador
from orquestrador.errors import StoreError
from orquestrador.store import Store
from orquestrador.store.reader import ReaderProcess
from tests.workers import ROOT, start_worker


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "State:\tZ" in status.read_text())  # a zombie is gone too


def _wait_gone(pid: int, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_resultados_leaves_the_wal_in_place_and_later_results_on_disk(tmp_path: Path) -> None:
    with Orquestrador("memory://", home=tmp_path) as orq:
        assert (tmp_path / "orquestrador.db-wal").exists()
        orq.resultados()
        orq.resultados(alvo="x")
        assert (tmp_path / "orquestrador.db-wal").exists(), "resultados() removed the live WAL"
        assert (tmp_path / "orquestrador.db-shm").exists()
        job = orq.iniciar_coleta("nenhum", {"n": 1})  # recorded after resultados()
        # A second connection (another process would see the same) finds it.
        assert Store(tmp_path / "orquestrador.db").job(job.message_id) is not None


def test_the_orchestrator_process_holds_one_sqlite_library(tmp_path: Path) -> None:
    with Orquestrador("memory://", home=tmp_path) as orq:
        orq.iniciar_coleta("nenhum", {"n": 1})
        assert len(orq.resultados()) == 1
    maps = Path("/proc/self/maps").read_text()
    assert "adbc_driver_sqlite" not in maps, "Arrow's SQLite driver was loaded into this process"


def test_the_reader_process_dies_with_its_parent(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        from orquestrador import Orquestrador
        from orquestrador.store import reader
        orq = Orquestrador("memory://", home={str(tmp_path)!r})
        orq.resultados()
        print(reader.shared.pid, flush=True)
        import time; time.sleep(600)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert _alive(child)
    finally:
        parent.kill()
        parent.wait()
    assert _wait_gone(child), "the reader process outlived its killed parent"


def test_a_reader_that_dies_mid_query_is_a_clear_error_and_is_replaced(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    reader = ReaderProcess()
    try:
        reader.start()
        pid = reader.pid
        assert pid is not None
        endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT max(x) FROM c"
        killer = subprocess.Popen([sys.executable, "-c", f"import os,time; time.sleep(1); os.kill({pid}, 9)"])
        with pytest.raises(StoreError, match="reader process died"):
            reader.query(store.path, endless)
        killer.wait()
        assert reader.query(store.path, "SELECT COUNT(*) AS n FROM jobs").column("n").to_pylist() == [0]
        assert reader.pid not in (None, pid)
        with pytest.raises(StoreError, match="no such table"):
            reader.query(store.path, "SELECT * FROM nada")
    finally:
        reader.close()


_KERNEL = """
import json, sys, time
from orquestrador import Orquestrador
url, home, alvo, fila = sys.argv[1:5]
orq = Orquestrador(url, home=home, responder_para=fila)
antes = orq.iniciar_coletas(alvo, ({"n": i} for i in range(10)), progress=False).wait(60)
orq.resultados()  # what notebook 01 does in its tenth cell
depois = orq.iniciar_coletas(alvo, ({"n": i} for i in range(10, 17)), progress=False).wait(60)
print(json.dumps({"antes": antes.id, "depois": depois.id}), flush=True)
time.sleep(600)
"""


@pytest.mark.nats
def test_results_recorded_after_resultados_survive_a_sigkilled_kernel(nats_url: str, tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:8]
    worker = start_worker(nats_url, "eco", suffix)
    home = tmp_path / "kernel"
    try:
        kernel = subprocess.Popen(
            [sys.executable, "-c", _KERNEL, nats_url, str(home), f"eco_{suffix}", f"res_{suffix}"],
            cwd=ROOT, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert kernel.stdout is not None
            line = kernel.stdout.readline()
            assert line, "the kernel process failed before launching both batches"
            lotes = json.loads(line)
        finally:
            kernel.send_signal(signal.SIGKILL)
            kernel.wait()
    finally:
        worker.stop()

    with Orquestrador("memory://", home=home) as orq:  # a new kernel on the same store
        antes, depois = orq.lote(lotes["antes"]), orq.lote(lotes["depois"])
        assert antes is not None and antes.contagem() == {"ok": 10}
        assert depois is not None and depois.contagem() == {"ok": 7}
        frame = orq.resultados()
    assert sorted(frame["resultado.eco.n"]) == list(range(17))
    assert frame["payload.n"].notna().all()
