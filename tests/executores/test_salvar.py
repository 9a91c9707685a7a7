"""The salvar executor writes Parquet files that pandas reads back, once per message."""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from executores import salvar as salvar_mod
from executores.salvar import ler, salvar
from orquestrador import Contexto, PermanentFailure
from orquestrador.settings import ENV_DATASET_ROOTS


def ctx(message_id: str = "m-1") -> Contexto:
    return Contexto("c", message_id, 1, "salvar", logging.LoggerAdapter(logging.getLogger("t"), {}))


HOJE = datetime.now(UTC).date().isoformat()

REGISTROS = [
    {"url": "https://a.example/1", "status": 200, "preco": 10, "ok": True},
    {"url": "https://a.example/2", "status": 404, "preco": 2.5, "ok": False},
]


@pytest.fixture
def base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(salvar_mod.ENV_DATASET_DIR, str(tmp_path / "ds"))
    monkeypatch.delenv(ENV_DATASET_ROOTS, raising=False)
    monkeypatch.chdir(tmp_path)  # a relative path taken as is would land here, not in the checkout
    return tmp_path / "ds"


def test_records_are_written_partitioned_and_read_back_by_pandas(base: Path):
    result = salvar({"registros": REGISTROS, "alvo": "http"}, ctx("m-1"))
    esperado = base / "alvo=http" / f"data={HOJE}" / "part-m-1.parquet"
    assert result == {"arquivo": str(esperado), "registros": 2, "ja_existia": False}
    assert esperado.is_file()
    assert not [p for p in esperado.parent.iterdir() if p.name.startswith(".")]  # no temp left

    df = pd.read_parquet(base)
    assert sorted(df.columns) == ["alvo", "data", "ok", "preco", "status", "url"]
    assert df["url"].tolist() == ["https://a.example/1", "https://a.example/2"]
    assert df["status"].tolist() == [200, 404]
    assert df["preco"].tolist() == [10.0, 2.5]
    assert df["ok"].tolist() == [True, False]
    assert set(df["alvo"].astype(str)) == {"http"}
    assert set(df["data"].astype(str)) == {HOJE}


def test_a_redelivery_with_the_same_message_id_writes_nothing_new(base: Path):
    first = salvar({"registros": REGISTROS, "alvo": "http"}, ctx("m-2"))
    mtime = Path(first["arquivo"]).stat().st_mtime_ns
    again = salvar({"registros": REGISTROS, "alvo": "http"}, ctx("m-2"))
    assert again == {**first, "ja_existia": True}
    assert Path(first["arquivo"]).stat().st_mtime_ns == mtime
    assert len(list(base.rglob("*.parquet"))) == 1
    assert len(pd.read_parquet(base)) == 2
    other = salvar({"registros": REGISTROS[:1], "alvo": "http"}, ctx("m-3"))
    assert other["ja_existia"] is False
    assert len(pd.read_parquet(base)) == 3


def test_a_redelivery_on_another_day_finds_the_earlier_file(base: Path):
    antigo = base / "alvo=http" / "data=2000-01-01"
    antigo.mkdir(parents=True)
    salvar_mod.tabela(REGISTROS).to_pandas().to_parquet(antigo / "part-m-4.parquet")
    result = salvar({"registros": REGISTROS, "alvo": "http"}, ctx("m-4"))
    assert result == {"arquivo": str(antigo / "part-m-4.parquet"), "registros": 2, "ja_existia": True}
    assert not (base / "alvo=http" / f"data={HOJE}").exists()


def test_concurrent_deliveries_of_one_job_leave_one_file(base: Path):
    results: list[dict] = []
    barrier = threading.Barrier(8)

    def deliver() -> None:
        barrier.wait()
        results.append(salvar({"registros": REGISTROS * 50, "alvo": "http"}, ctx("m-race")))

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r["ja_existia"] for r in results) == [False] + [True] * 7
    assert {r["registros"] for r in results} == {100}
    assert [p.name for p in base.rglob("*") if p.is_file()] == ["part-m-race.parquet"]


def test_nested_values_are_json_text_that_pandas_reads(base: Path):
    registros = [
        {"id": 1, "meta": {"autor": "Ana", "tags": ["a", "b"]}, "links": ["x", "y"], "vazio": None},
        {"id": 2, "meta": {"autor": "Rui"}, "links": [], "misto": 3},
        {"id": 3, "meta": None, "links": None, "misto": "três"},
    ]
    salvar({"registros": registros, "alvo": "blog"}, ctx("m-5"))
    df = pd.read_parquet(base).sort_values("id")
    assert df["meta"].tolist()[:2] == [json.dumps({"autor": "Ana", "tags": ["a", "b"]}), '{"autor": "Rui"}']
    assert pd.isna(df["meta"].tolist()[2])
    assert json.loads(df["links"].iloc[0]) == ["x", "y"]
    assert df["misto"].tolist()[1:] == ["3", "três"]
    assert df["vazio"].isna().all()


def test_fields_named_like_partitions_are_kept_under_another_name(base: Path):
    salvar({"registros": [{"data": "2020-02-02", "alvo": "outro", "x": 1}], "alvo": "http"}, ctx("m-6"))
    df = pd.read_parquet(base)
    assert df["data_original"].tolist() == ["2020-02-02"]
    assert df["alvo_original"].tolist() == ["outro"]
    assert df["alvo"].astype(str).tolist() == ["http"]
    with pytest.raises(PermanentFailure, match="rename"):
        salvar({"registros": [{"data": 1, "data_original": 2}]}, ctx("m-7"))


def test_alvo_is_encoded_in_the_path_and_decoded_on_read(base: Path):
    result = salvar({"registros": [{"x": 1}], "alvo": "../../fora/x y"}, ctx("m-8"))
    assert Path(result["arquivo"]).resolve().is_relative_to(base.resolve())
    assert pd.read_parquet(base)["alvo"].astype(str).tolist() == ["../../fora/x y"]


def test_default_alvo_dataset_subdirectory_and_payload_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv(salvar_mod.ENV_DATASET_DIR, raising=False)
    padrao = salvar({"registros": [{"x": 1}]}, ctx("m-9"))
    home = Path(str(tmp_path / ".orquestrador"))  # conftest points ORQ_HOME here
    assert padrao["arquivo"] == str(
        home / "dataset" / "alvo=desconhecido" / f"data={HOJE}" / "part-m-9.parquet"
    )
    result = salvar({"registros": [{"x": 2}], "dataset": "precos", "diretorio": "lojas/sul"}, ctx("m-10"))
    assert result["arquivo"].startswith(
        str(home / "dataset" / "lojas" / "sul" / "precos" / "alvo=desconhecido")
    )
    assert pd.read_parquet(home / "dataset" / "lojas" / "sul" / "precos")["x"].tolist() == [2]


# -- the payload never chooses where on the worker's disk it writes ---------------------------


@pytest.mark.parametrize("diretorio", ["{fora}", "../fora", "a/../../fora", "{base}/../fora"])
def test_a_diretorio_outside_the_dataset_root_is_refused(
    diretorio: str, base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")  # where a relative path would land if taken as is
    diretorio = diretorio.format(fora=tmp_path / "fora", base=base)
    with pytest.raises(PermanentFailure, match=f"outside this worker's dataset root.*{ENV_DATASET_ROOTS}"):
        salvar({"registros": [{"x": 1}], "diretorio": diretorio}, ctx())
    assert not (tmp_path / "fora").exists()
    assert [p for p in tmp_path.rglob("*.parquet")] == []


def test_a_symlink_in_the_root_pointing_out_is_refused(base: Path, tmp_path: Path):
    base.mkdir()
    (tmp_path / "fora").mkdir()
    (base / "atalho").symlink_to(tmp_path / "fora")
    with pytest.raises(PermanentFailure, match="outside"):
        salvar({"registros": [{"x": 1}], "diretorio": "atalho"}, ctx())
    assert list((tmp_path / "fora").iterdir()) == []


def test_paths_inside_the_root_are_fine_however_spelt(base: Path):
    absoluto = salvar({"registros": [{"x": 1}], "diretorio": str(base / "a")}, ctx("m-30"))
    relativo = salvar({"registros": [{"x": 2}], "diretorio": "b/../a"}, ctx("m-31"))
    assert Path(absoluto["arquivo"]).parent.parent.parent == base / "a"
    assert Path(relativo["arquivo"]).parent.parent.parent == base / "a"
    assert sorted(pd.read_parquet(base / "a")["x"]) == [1, 2]


def test_other_roots_are_the_workers_to_allow(base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    outra = tmp_path / "outra-raiz"
    payload = {"registros": [{"x": 1}], "diretorio": str(outra / "precos")}
    with pytest.raises(PermanentFailure, match="outside"):
        salvar(payload, ctx("m-32"))
    monkeypatch.setenv(ENV_DATASET_ROOTS, f"relativa:{outra}")  # relative entries are ignored
    result = salvar(payload, ctx("m-32"))
    assert result["arquivo"].startswith(str(outra / "precos" / "alvo=desconhecido"))
    with pytest.raises(PermanentFailure, match="outside"):
        salvar({"registros": [{"x": 1}], "diretorio": str(tmp_path / "relativa")}, ctx("m-33"))


@pytest.mark.parametrize(
    "payload",
    [{"diretorio": "a\0b"}, {"diretorio": ""}, {"diretorio": "x" * 2000}, {"diretorio": "n" * 300},
     {"diretorio": f"a/{'n' * 300}/b"}, {"alvo": "é" * 200}, {"diretorio": ["a"]}],
)  # fmt: skip
def test_paths_the_filesystem_can_never_take_fail_permanently(payload: dict, base: Path):
    with pytest.raises(PermanentFailure):
        salvar({"registros": [{"x": 1}], **payload}, ctx())


def test_unsafe_message_ids_become_a_hash_not_a_path(base: Path):
    result = salvar({"registros": [{"x": 1}]}, ctx("../../etc/passwd"))
    nome = Path(result["arquivo"]).name
    assert nome.startswith("part-") and "/" not in nome and ".." not in nome
    assert salvar({"registros": [{"x": 1}]}, ctx("../../etc/passwd"))["ja_existia"] is True


def test_empty_registros_write_nothing(base: Path):
    assert salvar({"registros": []}, ctx()) == {"arquivo": None, "registros": 0, "ja_existia": False}
    assert not base.exists()


@pytest.mark.parametrize(
    "payload",
    [{}, {"registros": {"x": 1}}, {"registros": [1, 2]}, {"registros": [{"x": 1}], "alvo": 3},
     {"registros": [{"x": 1}], "dataset": "../fora"}, {"registros": [{"x": 1}], "dataset": ".oculto"},
     {"registros": [{"x": 1}], "diretorio": 5}],
)  # fmt: skip
def test_bad_payloads_fail_permanently(payload: dict, base: Path):
    with pytest.raises(PermanentFailure):
        salvar(payload, ctx())


def test_ler_unifies_schemas_that_changed_between_jobs(base: Path):
    salvar({"registros": [{"id": 1, "valor": 1}], "alvo": "a"}, ctx("m-20"))
    salvar({"registros": [{"id": 2, "valor": 2.5, "novo": "sim"}], "alvo": "a"}, ctx("m-21"))
    salvar({"registros": [{"id": "tres", "valor": None}], "alvo": "b"}, ctx("m-22"))
    df = ler(base).sort_values("valor")
    assert sorted(df.columns) == ["alvo", "data", "id", "novo", "valor"]
    assert df["valor"].tolist()[:2] == [1.0, 2.5]
    assert sorted(df["id"].tolist()) == ["1", "2", "tres"]
    assert df["novo"].tolist()[1] == "sim"
    assert ler(base).shape[0] == 3
    assert ler(base / "nada-aqui").empty
