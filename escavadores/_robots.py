"""robots.txt, obeyed by every escavador that fetches (RFC 9309, read by Scrapy's ``protego``).

Each origin's robots.txt is fetched once, through the same guarded client as the pages (so the
address policy applies to it too), and kept for an hour in a bounded cache; concurrent jobs on
one origin wait for the same fetch. It is read for the worker's user agent (``ORQ_USER_AGENT``),
whatever a payload sends, with the most specific ``User-agent`` group winning and ``*`` / ``$``
wildcards as Google and Scrapy read them.

Per the RFC: a 4xx (no robots.txt) allows everything; a 429, 5xx or network error means the
site cannot say, so the job is retried later rather than fetched; a redirect is followed.
Hosts the operator owns can be listed in ``ORQ_ROBOTS_IGNORE``.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from protego import Protego

from orquestrador import PermanentFailure
from orquestrador.settings import ENV_ROBOTS_IGNORE, robots_ignore, user_agent

TTL = 3600.0
MAX_ORIGENS = 4096
MAX_BYTES = 512 * 1024  # RFC 9309: parse at least 500 KiB

# A fetch of ``url`` → (status, body); raises Retry / httpx errors like the pages' fetch does.
Buscar = Callable[[str], Awaitable[tuple[int, bytes]]]

_cache: OrderedDict[str, tuple[float, Protego | None]] = OrderedDict()
_pendentes: dict[tuple[int, str], asyncio.Task[Protego | None]] = {}


class RobotsRecusado(PermanentFailure):
    """The site's robots.txt disallows the URL for this worker's user agent."""


def origem(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}[parts.scheme]
    host = (parts.hostname or "").lower()
    return f"{parts.scheme}://{f'[{host}]' if ':' in host else host}:{port}"


def ignorado(host: str) -> bool:
    """Whether ``ORQ_ROBOTS_IGNORE`` spares ``host``."""
    host = host.lower()
    for entry in robots_ignore():
        if entry == "*" or host == entry.lstrip(".") or (entry.startswith(".") and host.endswith(entry)):
            return True
    return False


async def verificar(url: str, buscar: Buscar) -> None:
    """Return if robots.txt lets this worker fetch ``url``, else raise :class:`RobotsRecusado`."""
    parts = urlsplit(url)
    if parts.path == "/robots.txt" or ignorado(parts.hostname or ""):
        return
    chave = origem(url)
    regras = await _regras(chave, buscar)
    agente = user_agent()
    if regras is not None and not regras.can_fetch(url, agente):
        raise RobotsRecusado(
            f"{url[:300]} is disallowed by {chave}/robots.txt for user agent {agente.split('/')[0]!r}; "
            f"an operator may set {ENV_ROBOTS_IGNORE} for sites they own"
        )


async def _regras(chave: str, buscar: Buscar) -> Protego | None:
    """The origin's rules (None: everything allowed), from the cache or one shared fetch.

    The fetch is a task of its own, so a job that gives up waiting (its deadline, a shutdown)
    does not cancel it under the other jobs waiting for the same origin.
    """
    cached = _cache.get(chave)
    if cached is not None and cached[0] > time.monotonic():
        _cache.move_to_end(chave)
        return cached[1]
    loop = asyncio.get_running_loop()
    key = (id(loop), chave)
    tarefa = _pendentes.get(key)
    if tarefa is None:
        tarefa = loop.create_task(_buscar_regras(chave, buscar), name=f"robots.txt {chave}")
        _pendentes[key] = tarefa
        tarefa.add_done_callback(functools.partial(_concluida, key, chave))
    return await asyncio.shield(tarefa)


def _concluida(key: tuple[int, str], chave: str, tarefa: asyncio.Task[Protego | None]) -> None:
    """Cache a fetched robots.txt; a failed fetch is not cached (its waiters got the error)."""
    _pendentes.pop(key, None)
    if tarefa.cancelled() or tarefa.exception() is not None:
        return
    _cache[chave] = (time.monotonic() + TTL, tarefa.result())
    _cache.move_to_end(chave)
    while len(_cache) > MAX_ORIGENS:
        _cache.popitem(last=False)


async def _buscar_regras(chave: str, buscar: Buscar) -> Protego | None:
    status, body = await buscar(f"{chave}/robots.txt")
    if status >= 400:  # 4xx: the site has no rules for us (5xx/429 raised Retry in buscar)
        return None
    return Protego.parse(body.decode("utf-8", errors="replace"))


def esquecer() -> None:
    """Drop every cached robots.txt (for tests, and for a worker told the rules changed)."""
    _cache.clear()
