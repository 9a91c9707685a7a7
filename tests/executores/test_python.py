"""The python executor calls allow-listed functions, and imports nothing it was not allowed to."""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path

import pytest

from executores import python as py_exec
from executores.python import executar_funcao
from orquestrador import Contexto, PermanentFailure

TAREFAS = "tests.executores.tarefas_exemplo"
PROIBIDO = "tests.executores.proibido"


def ctx() -> Contexto:
    return Contexto("c", "m", 1, "python", logging.LoggerAdapter(logging.getLogger("t"), {}))


@pytest.fixture(autouse=True)
def _clean_allow_list(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.delenv(py_exec.ENV_ALLOW, raising=False)
    yield
    py_exec.revogar(*py_exec.permitidos())


async def test_an_allowed_function_gets_the_payload_args_as_keywords(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(py_exec.ENV_ALLOW, f"outra.coisa, {TAREFAS}")
    result = await executar_funcao({"funcao": f"{TAREFAS}:somar", "args": {"a": 2, "b": 40}}, ctx())
    assert result == {"soma": 42}


async def test_dotted_form_and_exact_path_entries(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(py_exec.ENV_ALLOW, f"{TAREFAS}.dobro")
    assert await executar_funcao({"funcao": f"{TAREFAS}.dobro", "args": {"n": 21}}, ctx()) == {"valor": 42}
    with pytest.raises(PermanentFailure, match=py_exec.ENV_ALLOW):
        await executar_funcao({"funcao": f"{TAREFAS}.somar", "args": {"a": 1}}, ctx())


async def test_async_functions_are_awaited_and_sync_ones_run_off_the_loop_thread():
    py_exec.permitir(TAREFAS)
    result = await executar_funcao({"funcao": f"{TAREFAS}:esperar_e_ecoar", "args": {"texto": "olá"}}, ctx())
    assert result["eco"] == "olá"
    assert result["thread"] == threading.current_thread().name  # awaited on this loop
    outra = await executar_funcao({"funcao": f"{TAREFAS}:em_que_thread"}, ctx())
    assert outra["valor"] != threading.current_thread().name


async def test_a_refused_module_is_never_imported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    marker = tmp_path / "imported"
    monkeypatch.setenv("ORQ_TEST_PROIBIDO_MARKER", str(marker))
    monkeypatch.setenv(py_exec.ENV_ALLOW, "tests.executores.tarefas")  # a prefix of a name, not a module
    sys.modules.pop(PROIBIDO, None)
    for funcao in (f"{PROIBIDO}:qualquer", f"{PROIBIDO}.qualquer", f"{TAREFAS}_x:f"):
        with pytest.raises(PermanentFailure, match=py_exec.ENV_ALLOW) as info:
            await executar_funcao({"funcao": funcao}, ctx())
        assert "permitir" in str(info.value)
    assert PROIBIDO not in sys.modules
    assert not marker.exists()


async def test_a_re_exported_function_is_judged_where_it_is_defined():
    py_exec.permitir(TAREFAS)
    with pytest.raises(PermanentFailure, match="defined as"):
        await executar_funcao({"funcao": f"{TAREFAS}:getcwd"}, ctx())


@pytest.mark.parametrize(
    "funcao",
    [None, 42, "", "semmodulo", f"{TAREFAS}:", f"{TAREFAS}:os.system", f"{TAREFAS}:_privada",
     f"{TAREFAS}:__dict__", "../etc:passwd", f"{TAREFAS}:somar; rm -rf /"],
)  # fmt: skip
async def test_malformed_or_private_names_fail_permanently(funcao: object):
    py_exec.permitir(TAREFAS)
    with pytest.raises(PermanentFailure):
        await executar_funcao({"funcao": funcao}, ctx())


async def test_wrong_arguments_fail_permanently_before_the_call():
    py_exec.permitir(TAREFAS)
    with pytest.raises(PermanentFailure, match="cannot be called"):
        await executar_funcao({"funcao": f"{TAREFAS}:somar", "args": {"x": 1}}, ctx())
    with pytest.raises(PermanentFailure, match="keyword arguments"):
        await executar_funcao({"funcao": f"{TAREFAS}:somar", "args": [1, 2]}, ctx())


async def test_missing_function_or_module_fails_permanently():
    py_exec.permitir("tests.executores")
    with pytest.raises(PermanentFailure, match="no function"):
        await executar_funcao({"funcao": f"{TAREFAS}:nao_existe"}, ctx())
    with pytest.raises(PermanentFailure, match="cannot import"):
        await executar_funcao({"funcao": "tests.executores.nao_existe:f"}, ctx())


async def test_non_serialisable_results_fail_permanently_with_a_clear_message():
    py_exec.permitir(TAREFAS)
    with pytest.raises(PermanentFailure, match="not JSON-serialisable"):
        await executar_funcao({"funcao": f"{TAREFAS}:objeto"}, ctx())
    # What the wire can carry comes back as it will arrive: a date as ISO text.
    assert await executar_funcao({"funcao": f"{TAREFAS}:dia"}, ctx()) == {"valor": "2024-05-17"}


def test_permitir_refuses_entries_that_are_not_dotted_paths():
    with pytest.raises(ValueError):
        py_exec.permitir("meu pacote")
    with pytest.raises(ValueError):
        py_exec.permitir("pkg/mod")
