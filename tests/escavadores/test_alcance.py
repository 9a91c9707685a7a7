"""What a payload can make an escavador do, for all four built-ins: where its headers go, how long
a fetch may last, how much it may ask for, and which bad input fails at once instead of retrying.
"""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from orquestrador import Contexto, PermanentFailure
from orquestrador.settings import ENV_FETCH_MAX_BYTES, ENV_FETCH_MAX_TIMEOUT
from tests.escavadores.servidor import PLUGINS, Site

NOMES = list(PLUGINS)


@pytest.fixture(autouse=True)
def _limpo(origem: Site, outra_origem: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    origem.pedidos.clear()
    outra_origem.pedidos.clear()
    for env in (ENV_FETCH_MAX_BYTES, ENV_FETCH_MAX_TIMEOUT):
        monkeypatch.delenv(env, raising=False)


def ctx(nome: str) -> Contexto:
    return Contexto("c", "m", 1, nome, logging.LoggerAdapter(logging.getLogger("t"), {}))


async def coletar(nome: str, payload: dict[str, Any]) -> dict[str, Any]:
    return await PLUGINS[nome](payload, ctx(nome))


def segredo(nome: str) -> tuple[dict[str, Any], str, str]:
    """Payload options carrying a secret header, the header's name and its value."""
    if nome == "http":  # http takes no headers, only a user agent
        return {"user_agent": "agente-secreto/1"}, "user-agent", "agente-secreto/1"
    return {"headers": {"X-Api-Key": "chave-secreta"}}, "x-api-key", "chave-secreta"


# -- payload headers go to the origin only, on every hop --------------------------------------


@pytest.mark.parametrize("nome", NOMES)
async def test_payload_headers_stay_with_the_origin_across_a_redirect(
    nome: str, origem: Site, outra_origem: Site
):
    opcoes, header, valor = segredo(nome)
    url = f"{origem.url}/redir?para={quote(f'{outra_origem.url}/doc/{nome}')}"
    await coletar(nome, {"url": url, **opcoes})
    assert [h.get(header) for h in origem.headers_em("/redir")] == [valor]
    assert [h.get(header) for h in outra_origem.headers_em("/doc")] != [valor]
    assert len(outra_origem.headers_em("/doc")) == 1


@pytest.mark.parametrize("nome", NOMES)
async def test_payload_headers_follow_a_redirect_within_the_origin(nome: str, origem: Site):
    opcoes, header, valor = segredo(nome)
    await coletar(nome, {"url": f"{origem.url}/redir?para=/doc/{nome}", **opcoes})
    assert [h.get(header) for h in origem.headers_em("/")] == [valor, valor]


async def test_cookies_live_for_one_fetch_and_never_reach_another_job(origem: Site):
    await coletar("json_api", {"url": f"{origem.url}/cookie/json_api"})
    await coletar("json_api", {"url": f"{origem.url}/doc/json_api"})
    cookies = [h.get("cookie") for h in origem.headers_em("/doc")]
    assert cookies == ["sessao=segredo", None]  # the redirect kept it; the next job did not get it


# -- a timeout bounds the whole fetch ---------------------------------------------------------


@pytest.mark.parametrize("nome", NOMES)
async def test_a_server_dripping_bytes_cannot_outlast_the_timeout(nome: str, origem: Site):
    inicio = time.monotonic()
    with pytest.raises(httpx.TimeoutException, match="whole fetch"):
        await coletar(nome, {"url": f"{origem.url}/gota/{nome}", "timeout": 1})
    assert time.monotonic() - inicio < 10  # the drip would take ~30 s


# -- worker ceilings bound what a payload may ask for ---------------------------------------


@pytest.mark.parametrize("nome", NOMES)
@pytest.mark.parametrize(
    ("opcao", "setting"),
    [({"max_bytes": 10**12}, ENV_FETCH_MAX_BYTES), ({"timeout": 10**6}, ENV_FETCH_MAX_TIMEOUT)],
)
async def test_a_payload_cannot_ask_past_the_workers_ceiling(
    nome: str, opcao: dict[str, int], setting: str, origem: Site
):
    with pytest.raises(PermanentFailure, match=f"above this worker's ceiling {setting}"):
        await coletar(nome, {"url": f"{origem.url}/doc/{nome}", **opcao})
    assert origem.pedidos == []


async def test_the_ceiling_is_the_workers_setting_and_lowers_the_defaults(
    origem: Site, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv(ENV_FETCH_MAX_BYTES, "1000")
    with pytest.raises(PermanentFailure, match=ENV_FETCH_MAX_BYTES):
        await coletar("json_api", {"url": f"{origem.url}/grande", "max_bytes": 2000})
    with pytest.raises(PermanentFailure, match="larger than max_bytes=1000"):
        await coletar("json_api", {"url": f"{origem.url}/grande"})  # the default, 10 MiB, lowered
    pagina = await coletar("http", {"url": f"{origem.url}/grande"})
    assert pagina["truncado"] is True and pagina["bytes"] == 1000


async def test_json_api_pages_held_in_memory_add_up_to_the_ceiling(
    origem: Site, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv(ENV_FETCH_MAX_BYTES, "12000")  # one page of /grande is ~5.8 kB
    result = await coletar("json_api", {"url": f"{origem.url}/grande", "paginacao": "page", "max_pages": 50})
    assert result["paginas"] == 3
    assert result["truncado"] is True


# -- what can never succeed fails at once -------------------------------------------------------


@pytest.mark.parametrize("nome", NOMES)
@pytest.mark.parametrize("para", ["ftp://127.0.0.1/x", "file:///etc/passwd", "http://[::1"])
async def test_a_redirect_to_an_unsupported_scheme_fails_permanently(nome: str, para: str, origem: Site):
    with pytest.raises(PermanentFailure, match="only http"):
        await coletar(nome, {"url": f"{origem.url}/redir?para={quote(para)}"})


async def test_endless_redirects_fail_permanently(origem: Site):
    with pytest.raises(PermanentFailure, match="redirected more than 10 times"):
        await coletar("http", {"url": f"{origem.url}/laco"})


@pytest.mark.parametrize("nome", NOMES)
@pytest.mark.parametrize(
    "opcao",
    [{"timeout": "3"}, {"timeout": float("nan")}, {"timeout": True}, {"max_bytes": "1000"},
     {"max_bytes": 1.5}, {"max_bytes": 0}, {"timeout": 10**400}, {"max_bytes": 10**400},
     {"url": "http://127.0.0.1:99999/"}, {"url": "http://[::1"},
     {"url": "http://a b/"}, {"url": "http://127.0.0.1/\x00"}],
)  # fmt: skip
async def test_payload_values_of_the_wrong_type_or_range_fail_permanently(
    nome: str, opcao: dict[str, Any], origem: Site
):
    with pytest.raises(PermanentFailure):
        await coletar(nome, {"url": f"{origem.url}/doc/{nome}", **opcao})
    assert origem.pedidos == []


@pytest.mark.parametrize("nome", NOMES)
async def test_headers_http_cannot_carry_fail_permanently(nome: str, origem: Site):
    ruins: list[dict[str, Any]] = (
        [{"user_agent": 5}, {"user_agent": "a\r\nX-Injetado: 1"}, {"user_agent": "agente-ç"}]
        if nome == "http"
        else [{"headers": {"X-Key": "a\r\nX-Injetado: 1"}}, {"headers": {"X-Key": "chave-ç"}},
              {"headers": {"X Key": "1"}}, {"headers": {"X-Key": ["1"]}}]
    )  # fmt: skip
    for opcao in ruins:
        with pytest.raises(PermanentFailure) as info:
            await coletar(nome, {"url": f"{origem.url}/doc/{nome}", **opcao})
        assert "Injetado" not in str(info.value)  # values are never echoed: they may be secrets
    assert origem.pedidos == []
