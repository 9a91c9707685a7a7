"""Sessions per site from the worker's ``ORQ_SESSIONS`` file: headers, cookies, a cookie file and a
login recipe, sent to the site's origin only and never shown."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from escavadores import _sessoes
from escavadores._rede import EnderecoRecusado
from escavadores.http import coletar_pagina
from orquestrador import Retry
from orquestrador.errors import ConfigError
from orquestrador.settings import ENV_FETCH_DENY
from tests.escavadores.servidor import contexto, servir

SENHA = "s3nha-secreta"
TOKEN = "tok-0123456789"


@dataclass
class Loja:
    url: str = ""
    logins: int = 0
    validos: set[str] = field(default_factory=set)
    vistos: list[tuple[str, dict[str, str]]] = field(default_factory=list)


def _handler(loja: Loja) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            corpo = self.rfile.read(int(self.headers.get("content-length", 0))).decode()
            form = {k: v[0] for k, v in parse_qs(corpo).items()}
            if self.path != "/entrar" or form != {"usuario": "ana", "senha": SENHA}:
                self._html(401, "negado")
                return
            loja.logins += 1
            valor = f"ok{loja.logins}"
            loja.validos.add(valor)
            self.send_response(302)
            self.send_header("Set-Cookie", f"login={valor}; Path=/; HttpOnly")
            self.send_header("Location", "/conta")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            loja.vistos.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
            parts = urlsplit(self.path)
            cookies = dict(
                c.strip().split("=", 1) for c in self.headers.get("cookie", "").split(";") if "=" in c
            )
            if parts.path == "/conta":
                ok = cookies.get("login") in loja.validos
                self._html(200 if ok else 401, "Conta de ana" if ok else "entre primeiro")
            elif parts.path == "/expira":
                loja.validos.clear()
                self._html(200, "expirou")
            elif parts.path == "/redir":
                self.send_response(302)
                self.send_header("Location", parse_qs(parts.query)["para"][0])
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif parts.path == "/robots.txt":
                self._html(404, "")
            else:
                self._html(200, "eco")

        def _html(self, status: int, titulo: str) -> None:
            body = f"<html><head><title>{titulo}</title></head></html>".encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return None

    return Handler


@pytest.fixture
def loja() -> Iterator[Loja]:
    estado = Loja()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(estado))
    server.daemon_threads = True
    estado.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield estado
    server.shutdown()
    server.server_close()


def configurar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, texto: str, nome: str = "sessoes.toml"
) -> Path:
    arquivo = tmp_path / nome
    arquivo.write_text(texto)
    monkeypatch.setenv(_sessoes.ENV_SESSIONS, str(arquivo))
    monkeypatch.setenv("LOJA_SENHA", SENHA)
    monkeypatch.setenv("LOJA_TOKEN", TOKEN)
    return arquivo


async def pegar(url: str) -> dict[str, object]:
    return await coletar_pagina({"url": url}, contexto())


async def test_headers_and_cookies_go_to_the_sites_origin_only(
    loja: Loja, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    configurar(tmp_path, monkeypatch, f"""
[[sites]]
origem = "{loja.url}"
headers = {{ Authorization = {{ env = "LOJA_TOKEN" }}, X-Loja = 7 }}
cookies = {{ idioma = "pt" }}
""")  # fmt: skip
    with servir() as outro:
        await pegar(f"{loja.url}/redir?para={quote(outro.url + '/doc/http')}")
        await pegar(f"{outro.url}/doc/http")
    na_loja = next(h for path, h in loja.vistos if path.startswith("/redir"))
    assert na_loja["authorization"] == TOKEN and na_loja["x-loja"] == "7"
    assert na_loja["cookie"] == "idioma=pt"
    for _, headers in outro.pedidos:  # a redirect elsewhere and a direct job elsewhere: nothing
        assert "authorization" not in headers and "cookie" not in headers and "x-loja" not in headers
    # Another port of the same host is another origin.
    assert all("authorization" not in h for h in outro.robots)


async def test_a_cookie_file_is_sent_to_its_site(loja: Loja, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "cookies.txt").write_text(
        "# Netscape HTTP Cookie File\n127.0.0.1\tFALSE\t/\tFALSE\t0\tlogin\tdo-navegador\n"
    )
    loja.validos.add("do-navegador")
    configurar(tmp_path, monkeypatch, f'[[sites]]\norigem = "{loja.url}"\narquivo_cookies = "cookies.txt"\n')
    assert (await pegar(f"{loja.url}/conta"))["titulo"] == "Conta de ana"


LOGIN = """
[[sites]]
origem = "{url}"
[sites.login]
url = "{url}/entrar"
form = {{ usuario = "ana", senha = {{ env = "LOJA_SENHA" }} }}
"""


async def test_a_login_recipe_runs_once_and_again_when_the_session_expires(
    loja: Loja, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    configurar(tmp_path, monkeypatch, LOGIN.format(url=loja.url))
    resultados = await asyncio.gather(*(pegar(f"{loja.url}/conta") for _ in range(5)))
    assert [r["titulo"] for r in resultados] == ["Conta de ana"] * 5
    assert loja.logins == 1
    await pegar(f"{loja.url}/expira")  # the site forgets the session
    with pytest.raises(Retry, match="logs in again"):
        await pegar(f"{loja.url}/conta")
    assert (await pegar(f"{loja.url}/conta"))["titulo"] == "Conta de ana"
    assert loja.logins == 2


async def test_a_failing_login_is_a_configuration_error_that_shows_no_secret(
    loja: Loja, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    configurar(tmp_path, monkeypatch, LOGIN.format(url=loja.url))
    monkeypatch.setenv("LOJA_SENHA", "errada-" + SENHA)
    with pytest.raises(ConfigError) as info:
        await pegar(f"{loja.url}/conta")
    assert "answered 401" in str(info.value) and SENHA not in str(info.value)
    assert SENHA not in repr(_sessoes.sessoes())


async def test_the_address_policy_applies_to_the_login(
    loja: Loja, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    configurar(tmp_path, monkeypatch, LOGIN.format(url=loja.url))
    monkeypatch.setenv(ENV_FETCH_DENY, "loopback")
    with pytest.raises(EnderecoRecusado):
        await pegar(f"{loja.url}/conta")
    assert loja.logins == 0 and loja.vistos == []


@pytest.mark.parametrize(
    ("texto", "mensagem"),
    [
        ('[[sites]]\norigem = "ftp://x"\n', "'origem' must be an http(s) origin"),
        ('[[sites]]\norigem = "https://a.example"\nsenha = "SEGREDO"\n', "unknown keys ['senha']"),
        ('[[sites]]\norigem = "https://a.example"\nheaders = { X = { env = "NAO_EXISTE_X" } }\n',
         "headers.X comes from $NAO_EXISTE_X, which is not set"),
        ('[[sites]]\norigem = "https://a.example"\nheaders = { X = "SEGREDO\\nY: z" }\n',
         "header 'X' must be printable ASCII"),
        ('[[sites]]\norigem = "https://a.example"\n[sites.login]\nurl = "https://b.example/in"\n',
         "the login url must be on the site's origin"),
        ("sites = 'SEGREDO'", "needs a list 'sites'"),
        ("não é toml = = SEGREDO", "is not readable TOML/JSON"),
    ],
)  # fmt: skip
def test_a_bad_sessions_file_names_the_problem_but_no_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, texto: str, mensagem: str
):
    configurar(tmp_path, monkeypatch, texto)
    with pytest.raises(ConfigError) as info:
        _sessoes.sessoes()
    assert mensagem in str(info.value) and "SEGREDO" not in str(info.value)


def test_json_files_are_read_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    configurar(tmp_path, monkeypatch, '{"sites": [{"origem": "https://a.example", "cookies": {"c": "1"}}]}',
               "sessoes.json")  # fmt: skip
    [sessao] = _sessoes.sessoes()
    assert sessao.cobre("https://a.example/x") and not sessao.cobre("http://a.example/x")
    assert repr(sessao) == "Sessao('https://a.example')"
