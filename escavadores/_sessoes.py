"""Sessions per site: cookies and headers the worker adds for an origin, from its own settings.

Credentials never travel in payloads: the operator points ``ORQ_SESSIONS`` at a TOML or JSON
file that lists sites, each with the headers and cookies to send to its origin, a cookie file
(Netscape ``cookies.txt``, as browsers' export tools and curl write) and/or a login recipe::

    [[sites]]
    origem = "https://loja.example"              # scheme, host and port: nothing else gets them
    headers = { Authorization = { env = "LOJA_TOKEN" } }
    cookies = { idioma = "pt" }
    arquivo_cookies = "loja-cookies.txt"         # relative to this file
    [sites.login]                                # POSTed once per worker process, before the first page
    url = "https://loja.example/entrar"
    form = { usuario = "ana", senha = { env = "LOJA_SENHA" } }   # or json = {...}

A value ``{ env = "NAME" }`` is read from the worker's environment. A site's headers and cookies
go only to requests on its origin (the origin-only rule of payload headers), through the same
guarded client (the address policy applies to the login too); cookies a login sets are kept
for the process. A 401 or 403 on a site with a login drops them, and the job is retried with a
fresh login. Nothing here prints a value: errors name the file, the site and the key.
"""

from __future__ import annotations

import asyncio
import http.cookiejar
import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from orquestrador.errors import ConfigError

ENV_SESSIONS = "ORQ_SESSIONS"
_CHAVES_SITE = {"origem", "headers", "cookies", "arquivo_cookies", "login"}
_CHAVES_LOGIN = {"url", "form", "json", "headers"}

_carregadas: dict[tuple[str, int], list[Sessao]] = {}


def _origem(url: str) -> tuple[str, str, int]:
    u = httpx.URL(url)
    return u.scheme, u.host, u.port or {"http": 80, "https": 443}.get(u.scheme, 0)


@dataclass(repr=False, eq=False)
class Sessao:
    """One site's credentials and login state; its repr names the origin only."""

    origem: str
    headers: dict[str, str]
    jar: http.cookiejar.CookieJar
    login: dict[str, Any] | None = None
    jar_login: http.cookiejar.CookieJar = field(default_factory=http.cookiejar.CookieJar)
    _logado: bool = False
    _travas: dict[int, asyncio.Lock] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"Sessao({self.origem!r})"

    def cobre(self, url: str) -> bool:
        return _origem(url) == _origem(self.origem)

    def assinar(self, request: httpx.Request) -> None:
        """Add this site's headers and cookies to ``request`` (which must be on its origin)."""
        request.headers.update(self.headers)
        for jar in (self.jar, self.jar_login):
            amostra = httpx.Request("GET", request.url)
            httpx.Cookies(jar).set_cookie_header(amostra)
            proprios = amostra.headers.get("cookie")
            if proprios:
                antes = request.headers.get("cookie")
                request.headers["Cookie"] = f"{antes}; {proprios}" if antes else proprios

    async def entrar(self, cliente: httpx.AsyncClient, timeout: float) -> None:
        """Run the login recipe once per process (jobs arriving meanwhile wait for it)."""
        if self.login is None or self._logado:
            return
        trava = self._travas.setdefault(id(asyncio.get_running_loop()), asyncio.Lock())
        async with trava:
            if self._logado:
                return
            opcoes: dict[str, Any] = {"headers": self.login.get("headers") or {}, "timeout": timeout}
            if "json" in self.login:
                opcoes["json"] = self.login["json"]
            else:
                opcoes["data"] = self.login.get("form") or {}
            resp = await cliente.post(self.login["url"], **opcoes)
            await resp.aclose()
            if resp.status_code >= 400:
                raise ConfigError(
                    f"the login for {self.origem} in {ENV_SESSIONS} answered {resp.status_code}: check "
                    "its url and credentials"
                )
            httpx.Cookies(self.jar_login).extract_cookies(resp)
            self._logado = True

    def expirou(self) -> bool:
        """After a 401/403: forget the login's cookies; True if a new login may fix it."""
        if self.login is None:
            return False
        self._logado = False
        self.jar_login.clear()
        return True


def sessao_para(url: str) -> Sessao | None:
    """The configured session whose origin is ``url``'s, if any."""
    return next((s for s in sessoes() if s.cobre(url)), None)


def sessoes() -> list[Sessao]:
    """The sessions in ``ORQ_SESSIONS`` (read again when the file changes)."""
    caminho = os.environ.get(ENV_SESSIONS, "").strip()
    if not caminho:
        return []
    path = Path(caminho).expanduser()
    try:
        chave = (str(path.resolve()), path.stat().st_mtime_ns)
    except OSError as exc:
        raise ConfigError(f"{ENV_SESSIONS}={caminho!r} cannot be read: {exc.strerror}") from None
    if chave not in _carregadas:
        _carregadas.clear()
        _carregadas[chave] = ler_arquivo(path)
    return _carregadas[chave]


def ler_arquivo(path: Path) -> list[Sessao]:
    """Parse a sessions file; ConfigError names the file, the site and the key, never a value."""
    try:
        texto = path.read_text(encoding="utf-8")
        dados = json.loads(texto) if path.suffix == ".json" else tomllib.loads(texto)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        motivo = exc.strerror if isinstance(exc, OSError) else type(exc).__name__
        raise ConfigError(f"{ENV_SESSIONS} file {path} is not readable TOML/JSON ({motivo})") from None
    sites = dados.get("sites") if isinstance(dados, dict) else None
    if not isinstance(sites, list):
        raise ConfigError(f"{ENV_SESSIONS} file {path} needs a list 'sites' ([[sites]] in TOML)")
    return [_site(path, i, site) for i, site in enumerate(sites)]


def _site(path: Path, i: int, site: object) -> Sessao:
    onde = f"{ENV_SESSIONS} file {path}, site {i + 1}"
    if not isinstance(site, dict) or not isinstance(site.get("origem"), str):
        raise ConfigError(f"{onde}: needs 'origem' (e.g. \"https://loja.example\")")
    if set(site) - _CHAVES_SITE:
        raise ConfigError(f"{onde}: unknown keys {sorted(set(site) - _CHAVES_SITE)}")
    origem = site["origem"]
    try:
        esquema, host, _ = _origem(origem)
    except (httpx.InvalidURL, ValueError):
        esquema, host = "", ""
    if esquema not in ("http", "https") or not host:
        raise ConfigError(f"{onde}: 'origem' must be an http(s) origin such as https://loja.example")
    headers = _textos(onde, "headers", site.get("headers"))
    for nome, valor in headers.items():
        if "\n" in valor or "\r" in valor or not valor.isascii():
            raise ConfigError(f"{onde}: header {nome!r} must be printable ASCII on one line")
    jar = http.cookiejar.CookieJar()
    for nome, valor in _textos(onde, "cookies", site.get("cookies")).items():
        httpx.Cookies(jar).set(nome, valor, domain=host, path="/")
    if site.get("arquivo_cookies") is not None:
        _arquivo_cookies(onde, path.parent / str(site["arquivo_cookies"]), jar)
    login = site.get("login")
    if login is not None:
        login = _login(onde, origem, login)
    return Sessao(origem, headers, jar, login)


def _valor(onde: str, chave: str, valor: object) -> str:
    if isinstance(valor, dict) and set(valor) == {"env"} and isinstance(valor["env"], str):
        lido = os.environ.get(valor["env"])
        if lido is None:
            raise ConfigError(f"{onde}: {chave} comes from ${valor['env']}, which is not set")
        return lido
    if isinstance(valor, bool) or not isinstance(valor, str | int | float):
        raise ConfigError(f'{onde}: {chave} must be text, a number or {{env = "NAME"}}')
    return str(valor)


def _textos(onde: str, chave: str, valor: object) -> dict[str, str]:
    if valor is None:
        return {}
    if not isinstance(valor, dict):
        raise ConfigError(f"{onde}: '{chave}' must be a table of names to values")
    return {str(k): _valor(onde, f"{chave}.{k}", v) for k, v in valor.items()}


def _arquivo_cookies(onde: str, arquivo: Path, jar: http.cookiejar.CookieJar) -> None:
    lido = http.cookiejar.MozillaCookieJar(str(arquivo))
    try:
        lido.load(ignore_discard=True, ignore_expires=True)  # expiry is judged when sending
    except (OSError, http.cookiejar.LoadError) as exc:
        motivo = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not a cookies.txt file"
        raise ConfigError(f"{onde}: cookie file {arquivo} cannot be read ({motivo})") from None
    for cookie in lido:
        if cookie.expires == 0:  # how browsers' exports write a session cookie
            cookie.expires, cookie.discard = None, True
        jar.set_cookie(cookie)


def _login(onde: str, origem: str, login: object) -> dict[str, Any]:
    if not isinstance(login, dict) or not isinstance(login.get("url"), str):
        raise ConfigError(f"{onde}: 'login' needs a 'url'")
    if set(login) - _CHAVES_LOGIN or ("form" in login and "json" in login):
        raise ConfigError(f"{onde}: 'login' takes url, headers and one of form or json")
    try:
        mesma = _origem(login["url"]) == _origem(origem)
    except (httpx.InvalidURL, ValueError):
        mesma = False
    if not mesma:
        raise ConfigError(f"{onde}: the login url must be on the site's origin {origem}")
    receita: dict[str, Any] = {
        "url": login["url"],
        "headers": _textos(onde, "login.headers", login.get("headers")),
    }
    if "json" in login:
        receita["json"] = _json(onde, login["json"])
    else:
        receita["form"] = _textos(onde, "login.form", login.get("form"))
    return receita


def _json(onde: str, valor: object) -> Any:
    if isinstance(valor, dict):
        if set(valor) == {"env"}:
            return _valor(onde, "login.json", valor)
        return {k: _json(onde, v) for k, v in valor.items()}
    if isinstance(valor, list):
        return [_json(onde, v) for v in valor]
    return valor
