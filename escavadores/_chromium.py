"""One headless Chromium per worker process and a bounded pool of its contexts, for ``navegador``.

The browser is Debian's ``/usr/bin/chromium`` (or ``ORQ_CHROMIUM``), driven by Playwright and
never downloaded, launched once with a fresh temporary profile. Jobs borrow a context (at most
``ORQ_NAVEGADOR_CONTEXTOS`` at once, each serving one page at a time) and a context is closed
after ``ORQ_NAVEGADOR_PAGINAS`` pages, or at once if its page outlived its deadline, so memory a
site leaks is given back. When the browser's processes together pass ``ORQ_NAVEGADOR_MAX_MB``,
the browser is restarted between pages.

Every request the browser makes is fetched by the worker itself (:mod:`escavadores._rota`),
through the escavadores' guarded client: Chromium is pointed at a proxy that refuses every
connection, so nothing it does reaches the network except through that interception.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orquestrador.errors import ConfigError
from orquestrador.settings import ceiling

ENV_CHROMIUM = "ORQ_CHROMIUM"
ENV_CONTEXTOS = "ORQ_NAVEGADOR_CONTEXTOS"
ENV_PAGINAS = "ORQ_NAVEGADOR_PAGINAS"
ENV_MAX_MB = "ORQ_NAVEGADOR_MAX_MB"
DEFAULT_CONTEXTOS = 4
DEFAULT_PAGINAS = 50
DEFAULT_MAX_MB = 1536
INSTALL_HINT = 'the navegador escavador needs Playwright: pip install "orquestrador[navegador]"'
_TMP_CURTO = "/tmp" if os.path.isdir("/tmp") else None  # Unix socket paths: at most 107 bytes
FECHAR = 5.0  # seconds to close a page, a context or the browser before giving up on it

# The flags, a proxy nobody answers on, no UDP for WebRTC, and a V8 heap cap per renderer.
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--dns-prefetch-disable", "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
    "--js-flags=--max-old-space-size=512",
]  # fmt: skip


def executavel() -> str:
    """The Chromium to run: ``ORQ_CHROMIUM``, else Debian's, else one on the PATH."""
    escolhido = os.environ.get(ENV_CHROMIUM, "").strip()
    if escolhido:
        if not os.access(escolhido, os.X_OK):
            raise ConfigError(f"{ENV_CHROMIUM}={escolhido!r} is not an executable file")
        return escolhido
    for nome in ("/usr/bin/chromium", "chromium", "chromium-browser"):
        achado = shutil.which(nome)
        if achado:
            return achado
    raise ConfigError(
        f"no Chromium found for the navegador escavador: apt-get install chromium, or set {ENV_CHROMIUM}"
    )


def _porta_morta() -> socket.socket:
    """A bound, never listening socket: connections to its port are refused, for as long as it lives."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


def descendentes(pid: int | None = None) -> list[int]:
    """Every process under ``pid`` (default: this one), read from /proc."""
    pid = os.getpid() if pid is None else pid
    filhos: dict[int, list[int]] = {}
    for entrada in os.listdir("/proc"):
        if entrada.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = Path(f"/proc/{entrada}/stat").read_text()
                filhos.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entrada))
    achados: list[int] = []
    pilha = list(filhos.get(pid, []))
    while pilha:
        atual = pilha.pop()
        achados.append(atual)
        pilha.extend(filhos.get(atual, []))
    return achados


def memoria_mb(pids: list[int] | None = None) -> float:
    """Proportional memory (PSS, shared pages counted once) in MiB of ``pids`` (default: the
    processes under this one: the Playwright driver, the browser and its renderers)."""
    total = 0
    for pid in descendentes() if pids is None else pids:
        with contextlib.suppress(OSError, ValueError):
            for linha in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if linha.startswith("Pss:"):
                    total += int(linha.split()[1])
                    break
    return total / 1024


@dataclass
class Contexto:
    """A borrowed browser context, and what its ``preparar`` returned (the route's state)."""

    contexto: Any
    browser: Any
    estado: Any = None
    paginas: int = 0


@dataclass
class Pool:
    """The browser of one event loop and its contexts; ``preparar`` sets up each new context."""

    preparar: Any  # async (context) -> state: routes the context's requests
    _pw: Any = None
    _browser: Any = None
    _proxy: socket.socket | None = None
    _tmp: str | None = None
    _livres: list[Contexto] = field(default_factory=list)
    _em_uso: int = 0
    _reiniciar: bool = False
    _vaga: asyncio.Semaphore | None = None
    _trava: asyncio.Lock = field(default_factory=asyncio.Lock)
    lancamentos: int = 0

    async def _navegador(self) -> Any:
        async with self._trava:
            if self._browser is not None and self._browser.is_connected():
                return self._browser
            await self._descartar_navegador()
            try:
                from playwright.async_api import async_playwright
            except ImportError:
                raise ConfigError(INSTALL_HINT) from None
            if self._pw is None:
                self._pw = await async_playwright().start()
            self._proxy = self._proxy or _porta_morta()
            porta = self._proxy.getsockname()[1]
            if self._tmp is None:
                self._tmp = tempfile.mkdtemp(prefix="orq-chromium-", dir=_TMP_CURTO)
                atexit.register(shutil.rmtree, self._tmp, True)  # a worker never calls fechar()
            try:
                self._browser = await self._pw.chromium.launch(
                    executable_path=executavel(), args=ARGS, headless=True,
                    proxy={"server": f"http://127.0.0.1:{porta}", "bypass": "<-loopback>"},
                    env={**os.environ, "TMPDIR": self._tmp},  # its sockets' paths must stay short
                )  # fmt: skip
            except Exception as exc:  # Playwright's own errors: the browser could not start here
                linhas = [x for x in str(exc).splitlines() if "FATAL" in x or "error" in x.lower()]
                raise ConfigError(
                    f"Chromium ({executavel()}) did not start: {(linhas or [str(exc)])[0][:300]}"
                ) from None
            self.lancamentos += 1
            return self._browser

    def _limites(self) -> tuple[int, int]:
        return int(ceiling(ENV_CONTEXTOS, DEFAULT_CONTEXTOS)), int(ceiling(ENV_PAGINAS, DEFAULT_PAGINAS))

    @contextlib.asynccontextmanager
    async def contexto(self) -> AsyncIterator[Contexto]:
        """A context for one page; closed instead of reused if the job did not end well."""
        maximo, por_contexto = self._limites()
        if self._vaga is None:
            self._vaga = asyncio.Semaphore(maximo)
        async with self._vaga:
            while self._reiniciar and self._em_uso > 0:  # let the pages in flight finish first
                await asyncio.sleep(0.05)
            if self._reiniciar:
                self._reiniciar = False
                async with self._trava:
                    await self._descartar_navegador()
            item = self._livres.pop() if self._livres else None
            if item is None:
                browser = await self._navegador()
                novo = await browser.new_context(service_workers="block", accept_downloads=False)
                item = Contexto(novo, browser, await self.preparar(novo))
            inteiro = False
            self._em_uso += 1
            try:
                yield item
                inteiro = True
            finally:
                self._em_uso -= 1
                item.paginas += 1
                reusar = inteiro and item.paginas < por_contexto
                await asyncio.shield(self._devolver(item, reusar))

    async def _devolver(self, item: Contexto, reusar: bool) -> None:
        atual = item.browser is self._browser and item.browser.is_connected()
        if reusar and atual:
            self._livres.append(item)
            return
        try:
            async with asyncio.timeout(FECHAR):
                await item.contexto.close()
        except Exception:  # a renderer that will not die: the browser goes with it
            if atual:
                async with self._trava:
                    await self._descartar_navegador()
            return
        if memoria_mb() > ceiling(ENV_MAX_MB, DEFAULT_MAX_MB):
            self._reiniciar = True  # done by the next borrower, once no page is open

    async def _descartar_navegador(self) -> None:
        browser, self._browser = self._browser, None
        for item in self._livres:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(FECHAR):
                    await item.contexto.close()
        self._livres.clear()
        if browser is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(FECHAR):
                    await browser.close()

    async def fechar(self) -> None:
        """Close the browser and the Playwright driver (a worker's shutdown, a test's end)."""
        await self._descartar_navegador()
        if self._pw is not None:
            with contextlib.suppress(Exception):
                await self._pw.stop()
            self._pw = None
        if self._proxy is not None:
            self._proxy.close()
            self._proxy = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


_pools: dict[asyncio.AbstractEventLoop, Pool] = {}


def pool(preparar: Any) -> Pool:
    """The running loop's pool (one browser per worker process: a worker runs one loop)."""
    loop = asyncio.get_running_loop()
    for antigo in [lp for lp in _pools if lp.is_closed()]:
        del _pools[antigo]
    if loop not in _pools:
        _pools[loop] = Pool(preparar)
    return _pools[loop]
