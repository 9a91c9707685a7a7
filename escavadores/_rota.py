"""Every request of the browser, fetched by the worker: the escavadores' rules apply to Chromium too.

A Playwright route on each context takes the request, and the worker makes it through the
guarded client of :mod:`escavadores._http_client` — so the address policy is checked on the
address actually dialled (no DNS answer Chromium gets later matters), the site's session is
added on its origin only, robots.txt is obeyed for navigations, and bodies are bounded — then
hands the answer to the browser. A refused request is aborted; the page's job learns why
through :class:`Estado`. WebSockets are refused (they would bypass the route).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import httpx

from escavadores import _http_client as web
from escavadores import _robots, _sessoes
from orquestrador import PermanentFailure

# Set by the client or meaningless once the body is whole (httpx decodes gzip/br itself).
_SEM_PEDIDO = {"host", "content-length", "accept-encoding", "connection", "proxy-connection", "cookie2"}
_SEM_RESPOSTA = {"content-encoding", "content-length", "transfer-encoding", "connection", "keep-alive"}


@dataclass
class Estado:
    """The job a context serves now: its limits, and what the route refused for its page."""

    timeout: float = 20.0
    max_bytes: int = 5 * 1024 * 1024
    recusas: list[PermanentFailure] = field(default_factory=list)
    pedidos: int = 0


async def preparar(contexto: Any) -> Estado:
    """Route every request of a new context through the worker; refuse its WebSockets.

    The returned state is the context's: the navegador sets each page's limits in it.
    """
    estado = Estado()

    async def rota(route: Any) -> None:
        await atender(route, estado)

    async def sem_websocket(ws: Any) -> None:
        with contextlib.suppress(Exception):
            await ws.close(code=1008, reason="WebSockets are not fetched by this worker")

    await contexto.route("**/*", rota)
    await contexto.route_web_socket("**/*", sem_websocket)
    return estado


async def atender(route: Any, estado: Estado) -> None:
    """Fetch ``route``'s request with the worker's client and fulfil it, or abort it."""
    pedido = route.request
    url = pedido.url
    estado.pedidos += 1
    try:
        if not url.startswith(("http://", "https://")):
            raise PermanentFailure(f"{url[:200]}: only http(s) URLs are fetched")
        if pedido.is_navigation_request():
            await _robots.verificar(url, web.leitor_robots(estado.timeout))
        status, headers, corpo = await _buscar(pedido, url, estado)
    except PermanentFailure as exc:  # the address policy, robots.txt, a bad URL
        if pedido.is_navigation_request():
            estado.recusas.append(exc)
        await _abortar(route, "blockedbyclient")
        return
    except (httpx.HTTPError, OSError):
        await _abortar(route, "failed")
        return
    with contextlib.suppress(Exception):  # the page may be gone (closed at its deadline)
        await route.fulfill(status=status, headers=headers, body=corpo)


async def _abortar(route: Any, motivo: str) -> None:
    with contextlib.suppress(Exception):
        await route.abort(motivo)


async def _buscar(pedido: Any, url: str, estado: Estado) -> tuple[int, dict[str, str], bytes]:
    cliente = web.client()
    enviar = {k: v for k, v in (await pedido.all_headers()).items() if k.lower() not in _SEM_PEDIDO}
    enviar = {k: v for k, v in enviar.items() if not k.startswith(":")}
    request = cliente.build_request(
        pedido.method, url, headers=enviar, content=pedido.post_data_buffer, timeout=estado.timeout
    )
    sessao = _sessoes.sessao_para(url)
    if sessao is not None:
        await sessao.entrar(cliente, estado.timeout)
        sessao.assinar(request)
    resp = await cliente.send(request, stream=True)
    try:
        corpo = bytearray()
        async for chunk in resp.aiter_bytes():
            corpo += chunk
            if len(corpo) > estado.max_bytes:
                raise PermanentFailure(f"{url[:200]} is larger than max_bytes={estado.max_bytes}")
    finally:
        await resp.aclose()
    headers: dict[str, str] = {}
    for nome, valor in resp.headers.multi_items():
        nome = "location" if nome == web.LOCATION else nome.lower()
        if nome not in _SEM_RESPOSTA:
            headers[nome] = f"{headers[nome]}\n{valor}" if nome in headers else valor
    return resp.status_code, headers, bytes(corpo)
