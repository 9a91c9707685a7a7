"""resultados() as the analyst sees it: columns typed and flattened the same whatever the payloads hold.

The store is real SQLite; the frame is built by the columnar reader (ADBC + Arrow's JSON reader),
so these pin down the json_normalize(max_level=1) semantics it must keep.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from orquestrador.analysis import jobs_frame
from orquestrador.envelope import Erro, nova
from orquestrador.store import Store, jobs_filter
from orquestrador.store.columnar import read_jobs, read_jobs_stdlib
from orquestrador.store.reader import DriverMissing, ReaderProcess


def _run(store: Store, alvo: str, payload: dict, resultado: dict | None, erro: bool = False) -> str:
    job = nova("iniciar_coleta", payload, alvo=alvo)
    store.record_sent([job], f"escavador_{alvo}")
    res = nova("resultado_coleta", resultado or {}, alvo=alvo, correlation_id=job.correlation_id,
               causation_id=job.message_id)  # fmt: skip
    if erro:
        res = res.with_changes(status="erro", erro=Erro(tipo="HTTPError", mensagem="503"))
    else:
        res = res.with_changes(status="ok")
    store.record_results([res])
    return job.message_id


def _frame(store: Store, **filters: object) -> pd.DataFrame:
    where, args = jobs_filter(**filters)  # type: ignore[arg-type]
    return jobs_frame(read_jobs(store.path, where, args))


def test_nested_payloads_flatten_one_level_and_keep_lists_and_deeper_dicts(tmp_path: Path):
    store = Store(tmp_path / "s.db")
    _run(store, "a", {"url": "https://x", "meta": {"pagina": 2, "extra": {"z": 1}}, "tags": ["p", "q"]},
         {"titulo": "T"})  # fmt: skip
    frame = _frame(store)

    row = frame.iloc[0]
    assert row["payload.url"] == "https://x"
    assert row["payload.meta.pagina"] == 2
    assert row["payload.meta.extra"] == {"z": 1}  # deeper than one level stays a dict
    assert list(row["payload.tags"]) == ["p", "q"] and isinstance(row["payload.tags"], list)
    assert row["resultado.titulo"] == "T"


def test_a_key_whose_type_changes_between_rows_keeps_every_value(tmp_path: Path):
    store = Store(tmp_path / "s.db")
    _run(store, "a", {"codigo": 7}, {"v": 1})
    _run(store, "a", {"codigo": "sete"}, {"v": 2})  # number then text: Arrow cannot type it
    frame = _frame(store)

    assert frame["payload.codigo"].tolist() == [7, "sete"]
    assert frame["resultado.v"].tolist() == [1, 2]


def test_errors_times_and_states_are_typed(tmp_path: Path):
    store = Store(tmp_path / "s.db")
    _run(store, "a", {"n": 1}, {"ok": True})
    _run(store, "a", {"n": 2}, None, erro=True)
    pending = nova("iniciar_coleta", {"n": 3}, alvo="a")
    store.record_sent([pending], "escavador_a")
    frame = _frame(store)

    assert frame["status"].tolist() == ["ok", "erro", "queued"]
    assert str(frame["status"].dtype) == "category"
    assert frame["erro_tipo"].tolist()[1] == "HTTPError"
    assert pd.isna(frame["erro_tipo"].iloc[0])
    assert str(frame["enviado_em"].dtype) == "datetime64[ns, UTC]"
    assert frame["duracao"].iloc[0] >= pd.Timedelta(0)
    assert pd.isna(frame["concluido_em"].iloc[2]) and pd.isna(frame["duracao"].iloc[2])
    sent = frame["enviado_em"].iloc[2].timestamp()
    assert abs(sent - pending.timestamp.timestamp()) < 0.001


def test_filters_by_alvo_status_and_time(tmp_path: Path):
    store = Store(tmp_path / "s.db")
    _run(store, "a", {"n": 1}, {"x": 1})
    _run(store, "b", {"n": 2}, None, erro=True)
    now = datetime.now(UTC).timestamp()

    assert _frame(store, alvo="b")["payload.n"].tolist() == [2]
    assert _frame(store, estado="ok")["alvo"].tolist() == ["a"]
    assert _frame(store, desde=now + 60).empty
    assert len(_frame(store, desde=now - 60, ate=now + 60)) == 2


def test_an_empty_store_gives_the_columns_without_rows(tmp_path: Path):
    frame = _frame(Store(tmp_path / "s.db"))
    assert frame.empty
    assert {"correlation_id", "status", "enviado_em", "duracao"} <= set(frame.columns)


def test_the_standard_library_reads_the_same_table_as_the_reader_process(tmp_path: Path):
    store = Store(tmp_path / "s.db")
    _run(store, "a", {"n": 1, "meta": {"k": "v"}}, {"ok": True})
    _run(store, "b", {"n": 2}, None, erro=True)
    fast = _frame(store)
    where, args = jobs_filter()
    slow = jobs_frame(read_jobs_stdlib(store.path, where, args))
    pd.testing.assert_frame_equal(fast, slow)


def test_a_reader_without_the_adbc_driver_says_so(tmp_path: Path):
    # A trimmed install: the child cannot import the driver, and read_jobs falls back on it.
    fake = tmp_path / "sem_driver" / "adbc_driver_sqlite"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('no adbc here')\n")
    store = Store(tmp_path / "s.db")
    reader = ReaderProcess(env={**os.environ, "PYTHONPATH": str(fake.parent)})
    try:
        with pytest.raises(DriverMissing, match="no adbc here"):
            reader.query(store.path, "SELECT 1")
    finally:
        reader.close()
