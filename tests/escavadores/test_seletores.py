"""The http escavador's ``seletores``: fields read by CSS/XPath from real pages on a loopback site,
including broken markup and pages in other encodings than UTF-8."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from escavadores.http import coletar_pagina
from orquestrador import PermanentFailure
from tests.escavadores.servidor import Rota, contexto, servir_paginas

LOJA = """<!doctype html><html lang="pt-BR"><head><meta charset="utf-8"><title>Loja</title></head>
<body><h1> Ofertas <em>da semana</em></h1>
<ul id="produtos">
  <li class="produto destaque" data-id="7"><a href="/p/7">Banana prata</a>
      <span class="preco">R$ 5,90</span></li>
  <li class="produto" data-id="8"><a href="/p/8">Maçã fuji</a> <span class="preco">R$ 9,50</span></li>
  <li class="produto" data-id="9"><a href="/p/9">Uva itália</a><span class="preco"> </span></li>
</ul>
<script type="application/ld+json">{"@type": "Product"}</script>
</body></html>"""

# Unclosed tags, a stray end tag, an unquoted attribute, no </body></html>.
QUEBRADA = """<html><head><title>Quebrada</title><body>
<div class=caixa><p>primeiro<p>segundo</div></div>
<table><tr><td>a<td>b</table>
<span class="preco">R$ 1,00"""

PAGINAS: dict[str, Rota] = {
    "/loja": ("text/html; charset=utf-8", LOJA.encode()),
    "/quebrada": ("text/html", QUEBRADA.encode()),
    # The charset only in the Content-Type header.
    "/latin1": ("text/html; charset=iso-8859-1",
                "<html><body><h1>Açúcar e café</h1></body></html>".encode("latin-1")),
    # The charset only in a <meta> (windows-1252: curly quotes live in 0x80-0x9f).
    "/cp1252": ("text/html",
                '<html><head><meta http-equiv="Content-Type" content="text/html; charset=windows-1252">'
                "</head><body><h1>\u201cPreço\u201d</h1></body></html>".encode("cp1252")),
    "/sjis": ("text/html",
              '<html><head><meta charset="shift_jis"></head><body><h1>東京の天気</h1></body></html>'
              .encode("shift_jis")),
    "/utf16": ("text/html", "\ufeff<html><body><h1>Olá UTF-16</h1></body></html>".encode("utf-16-le")),
    # Declared UTF-8 but with a stray latin-1 byte in the middle: the rest must still be read.
    "/invalido": ("text/html; charset=utf-8",
                  b"<html><body><h1>caf\xe9 quebrado</h1><p class='fim'>depois do erro</p></body></html>"),
}  # fmt: skip


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    with servir_paginas(PAGINAS) as url:
        yield url


async def campos(url: str, seletores: object) -> dict[str, object]:
    result = await coletar_pagina({"url": url, "seletores": seletores}, contexto())
    return result["campos"]


async def test_css_and_xpath_rules_give_text_lists_attributes_and_markup(site: str):
    got = await campos(f"{site}/loja", {
        "titulo": "h1",
        "primeiro_texto": "h1::text",
        "nomes": {"css": "li.produto a::text", "lista": True},
        "links": {"css": "li.produto a", "atributo": "href", "lista": True},
        "ids": {"xpath": "//li[contains(@class, 'produto')]/@data-id", "lista": True},
        "precos": {"css": ".preco::text", "lista": True},
        "destaque": {"css": "li.destaque .preco", "html": True},
        "quantos": {"xpath": "count(//li)"},
        "json_ld": "script[type='application/ld+json']::text",
        "regex": {"xpath": "//a[re:test(text(), '^Ma')]/text()"},
    })  # fmt: skip
    assert got == {
        "titulo": "Ofertas da semana",
        "primeiro_texto": "Ofertas",
        "nomes": ["Banana prata", "Maçã fuji", "Uva itália"],
        "links": ["/p/7", "/p/8", "/p/9"],
        "ids": ["7", "8", "9"],
        "precos": ["R$ 5,90", "R$ 9,50"],  # the blank one is skipped
        "destaque": '<span class="preco">R$ 5,90</span>',
        "quantos": 3.0,
        "json_ld": '{"@type": "Product"}',
        "regex": "Maçã fuji",
    }


async def test_a_rule_that_matches_nothing_gives_none_or_an_empty_list(site: str):
    got = await campos(f"{site}/loja", {
        "nada": "div.inexistente",
        "nenhum": {"css": "table td", "lista": True},
        "sem_attr": {"css": "h1", "atributo": "data-x"},
    })  # fmt: skip
    assert got == {"nada": None, "nenhum": [], "sem_attr": None}


async def test_broken_markup_is_read_as_a_browser_would(site: str):
    got = await campos(f"{site}/quebrada", {
        "paragrafos": {"css": "div.caixa p", "lista": True},
        "celulas": {"css": "td::text", "lista": True},
        "preco": ".preco",
    })  # fmt: skip
    assert got == {"paragrafos": ["primeiro", "segundo"], "celulas": ["a", "b"], "preco": "R$ 1,00"}


@pytest.mark.parametrize(
    ("path", "esperado"),
    [("/latin1", "Açúcar e café"), ("/cp1252", "\u201cPreço\u201d"), ("/sjis", "東京の天気"),
     ("/utf16", "Olá UTF-16")],
)  # fmt: skip
async def test_pages_in_other_encodings_are_decoded_by_their_declaration(site: str, path: str, esperado: str):
    result = await coletar_pagina({"url": f"{site}{path}", "seletores": {"h1": "h1"}}, contexto())
    assert result["campos"]["h1"] == esperado
    assert result["headings"] == [{"nivel": "h1", "texto": esperado}]


async def test_bytes_the_encoding_cannot_decode_do_not_cut_the_page_short(site: str):
    got = await campos(f"{site}/invalido", {"h1": "h1", "fim": "p.fim"})
    assert got["fim"] == "depois do erro"
    assert isinstance(got["h1"], str) and got["h1"].endswith("quebrado")


@pytest.mark.parametrize(
    ("regra", "mensagem"),
    [
        ("div[", "seletores['preco']: invalid CSS 'div['"),
        ({"xpath": "//div[@class="}, "seletores['preco']: invalid XPath"),
        ({"xpath": "//*[nao-existe(.)]"}, "seletores['preco']: cannot evaluate"),
        ({"css": "a", "xpath": "//a"}, "seletores['preco']: "),
        ({"css": "a", "lista": "sim"}, "seletores['preco']: lista"),
        ({"css": "a", "atributo": "href", "html": True}, "seletores['preco']: "),
        (["a"], "seletores['preco']: a rule is a CSS string or an object"),
    ],
)  # fmt: skip
async def test_a_malformed_rule_is_a_permanent_failure_naming_the_field(
    site: str, regra: object, mensagem: str
):
    with pytest.raises(PermanentFailure) as info:
        await campos(f"{site}/loja", {"titulo": "h1", "preco": regra})
    assert str(info.value).startswith(mensagem), str(info.value)


async def test_a_malformed_rule_fails_before_anything_is_fetched():
    with pytest.raises(PermanentFailure, match="seletores"):
        await campos("http://127.0.0.1:1/", {"x": "a[["})  # a closed port: fetching would be a retry


def test_orq_asyncapi_documents_the_selector_rules_of_the_http_payload():
    import jsonschema

    from orquestrador import asyncapi
    from orquestrador.plugins import registry

    doc = asyncapi.document("nats://127.0.0.1:4222", plugins=[registry.get("escavador", "http")])
    schemas = doc["components"]["schemas"]
    assert "seletores" in schemas["PedidoHttp"]["properties"]
    assert set(schemas["RegraSeletor"]["properties"]) >= {"css", "xpath", "lista", "atributo", "html"}
    valida = jsonschema.Draft202012Validator({"$ref": "#/components/schemas/PedidoHttp", **doc})
    bom = {"url": "https://x.example/", "seletores": {"t": "h1", "l": {"xpath": "//a/@href", "lista": True}}}
    assert list(valida.iter_errors(bom)) == []
    assert list(valida.iter_errors({"url": "https://x.example/", "seletores": {"t": {"css": 1}}}))
    assert list(valida.iter_errors({"url": "https://x.example/", "seletores": {"t": {"cs": "h1"}}}))
