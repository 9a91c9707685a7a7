"""robots.txt, obeyed by every escavador that fetches: per-agent groups, wildcards, one fetch per
origin, the RFC's answers to a missing or failing robots.txt, and the operator's way out."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from escavadores import _robots
from escavadores._robots import RobotsRecusado
from escavadores.http import coletar_pagina
from orquestrador import Retry
from orquestrador.settings import ENV_ROBOTS_IGNORE, ENV_USER_AGENT
from tests.escavadores.servidor import PLUGINS, Rota, contexto, servir, servir_paginas

ROBOTS = b"""# comments and odd spacing are part of real files
User-agent: *
Disallow: /privado/
Allow: /privado/publico
Disallow: /*.pdf$
Disallow: /busca?*q=

User-agent: OutroBot
User-agent: orquestrador-escavador
Disallow: /so-para-nos/
Disallow: /*/rascunho
"""

HTML = ("text/html", b"<html><head><title>ok</title></head></html>")
PAGINAS: dict[str, Rota] = {
    "/robots.txt": ("text/plain", ROBOTS),
    **{p: HTML for p in ("/privado/a", "/privado/publico", "/doc.pdf", "/doc.pdf?v=2", "/busca?a=1&q=x",
                         "/so-para-nos/1", "/blog/rascunho", "/livre")},
}  # fmt: skip


@pytest.fixture
def pedidos() -> list[tuple[str, str]]:
    return []


@pytest.fixture
def site(pedidos: list[tuple[str, str]]) -> Iterator[str]:
    _robots.esquecer()
    with servir_paginas(dict(PAGINAS), pedidos) as url:
        yield url
    _robots.esquecer()


async def pegar(url: str) -> dict[str, object]:
    return await coletar_pagina({"url": url}, contexto())


@pytest.mark.parametrize(
    ("agente", "path", "permitido"),
    [
        # Our own group (named by the product token of the user agent) replaces the * group.
        (None, "/so-para-nos/1", False),
        (None, "/blog/rascunho", False),  # a wildcard in the middle
        (None, "/privado/a", True),
        (None, "/doc.pdf", True),
        # Another agent listed in the same group.
        ("OutroBot/2.1 (+https://outro.example)", "/so-para-nos/1", False),
        # An agent with no group of its own gets *'s rules.
        ("Ninguem/1.0", "/privado/a", False),
        ("Ninguem/1.0", "/privado/publico", True),  # the longer Allow wins
        ("Ninguem/1.0", "/doc.pdf", False),
        ("Ninguem/1.0", "/doc.pdf?v=2", True),  # $ anchors the end
        ("Ninguem/1.0", "/busca?a=1&q=x", False),
        ("Ninguem/1.0", "/so-para-nos/1", True),
    ],
)
async def test_rules_are_read_for_the_workers_user_agent(
    site: str, monkeypatch: pytest.MonkeyPatch, agente: str | None, path: str, permitido: bool
):
    if agente:
        monkeypatch.setenv(ENV_USER_AGENT, agente)
    if permitido:
        assert (await pegar(site + path))["status"] == 200
    else:
        with pytest.raises(RobotsRecusado) as info:
            await pegar(site + path)
        assert f"{path} is disallowed by " in str(info.value) and ENV_ROBOTS_IGNORE in str(info.value)


async def test_a_payloads_user_agent_does_not_change_the_rules(site: str):
    with pytest.raises(RobotsRecusado):
        await coletar_pagina({"url": f"{site}/so-para-nos/1", "user_agent": "Ninguem/1.0"}, contexto())


async def test_robots_txt_is_fetched_once_per_origin_with_the_configured_agent(
    site: str, pedidos: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv(ENV_USER_AGENT, "LojaBot/3.0")
    await asyncio.gather(*(pegar(f"{site}/livre") for _ in range(10)))
    await pegar(f"{site}/privado/publico")
    robots = [ua for path, ua in pedidos if path == "/robots.txt"]
    assert robots == ["LojaBot/3.0"]
    assert sum(1 for path, _ in pedidos if path != "/robots.txt") == 11


async def test_a_missing_robots_txt_allows_all_and_a_failing_one_retries_later(
    pedidos: list[tuple[str, str]],
):
    _robots.esquecer()
    paginas: dict[str, Rota] = {"/livre": HTML}
    with servir_paginas(paginas, pedidos) as site:
        assert (await pegar(f"{site}/livre"))["status"] == 200  # 404: no rules
        _robots.esquecer()
        paginas["/robots.txt"] = ("status:503", b"")
        with pytest.raises(Retry, match=r"robots\.txt answered 503"):
            await pegar(f"{site}/livre")
        assert pedidos[-1][0] == "/robots.txt"  # the page itself was not asked for
        paginas["/robots.txt"] = ("text/plain", b"User-agent: *\nDisallow: /")
        with pytest.raises(RobotsRecusado):  # a failure is not cached: the next job reads it again
            await pegar(f"{site}/livre")
    _robots.esquecer()


async def test_a_redirect_to_a_disallowed_page_is_refused(site: str):
    with servir() as origem:  # another origin, whose /redir answers a 302 to the forbidden page
        with pytest.raises(RobotsRecusado):
            await pegar(f"{origem.url}/redir?para={quote(f'{site}/so-para-nos/1')}")
        assert [path for path, _ in origem.pedidos] == [f"/redir?para={quote(f'{site}/so-para-nos/1')}"]


async def test_the_operator_can_spare_the_sites_they_own(
    site: str, pedidos: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv(ENV_ROBOTS_IGNORE, "intranet.example, 127.0.0.1")
    assert (await pegar(f"{site}/so-para-nos/1"))["status"] == 200
    assert "/robots.txt" not in [path for path, _ in pedidos]


@pytest.mark.parametrize("nome", sorted(PLUGINS))
async def test_every_fetching_escavador_obeys_robots_txt(site: str, nome: str):
    with pytest.raises(RobotsRecusado):
        await PLUGINS[nome]({"url": f"{site}/so-para-nos/doc"}, contexto(nome))
