"""The navegador escavador on Debian's Chromium: JavaScript-rendered pages on loopback sites, its
requests held to the address policy and robots.txt, a hanging page killed at its deadline, and a
worker's memory over 200 pages."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from escavadores import _chromium, _robots
from escavadores._rede import EnderecoRecusado
from escavadores._robots import RobotsRecusado
from escavadores.http import coletar_pagina
from escavadores.navegador import coletar_renderizada
from orquestrador import Orquestrador, PermanentFailure, Retry
from orquestrador.settings import ENV_FETCH_DENY
from tests.escavadores.servidor import Rota, contexto, servir_paginas
from tests.servers.process import unreachable
from tests.workers import start_worker

LISTA = {"itens": {"css": "#lista li", "lista": True}, "titulo": "h1"}

JS = b"""<html><head><title>Ofertas</title></head><body><h1>Ofertas</h1><ul id="lista"></ul>
<script>
fetch('/dados.json').then(r => r.json()).then(itens => {
  for (const nome of itens) {
    const li = document.createElement('li'); li.textContent = nome;
    document.getElementById('lista').append(li);
  }
  document.body.dataset.pronto = 'sim';
});
</script></body></html>"""


def paginas(outro: str = "") -> dict[str, Rota]:
    return {
        "/js": ("text/html", JS),
        "/dados.json": ("application/json", b'["banana", "maca", "uva"]'),
        "/trava": ("text/html", b"<html><body><p>antes</p><script>while (true) {}</script></body></html>"),
        "/robots.txt": ("text/plain", b"User-agent: *\nDisallow: /privado\n"),
        "/privado": ("text/html", b"<html><body>nao</body></html>"),
        "/vizinho": ("text/html", f"""<html><body><h1>pagina</h1><img src="{outro}/pixel.png">
            <script>fetch('{outro}/segredo').then(() => document.title = 'vazou')
                .catch(() => document.title = 'recusado')</script></body></html>""".encode()),
    }  # fmt: skip


@pytest.fixture(autouse=True)
def chromium() -> None:
    try:
        _chromium.executavel()
        import playwright  # noqa: F401
    except Exception as exc:
        unreachable(f"the navegador tests need Chromium and Playwright: {exc}")
    _robots.esquecer()


@pytest.fixture
def site() -> Iterator[str]:
    with servir_paginas(paginas()) as url:
        yield url


@pytest.fixture
async def fechar_navegador() -> AsyncIterator[None]:
    yield
    await _chromium.pool(None).fechar()


async def renderizar(payload: dict[str, object]) -> dict[str, object]:
    return await coletar_renderizada(payload, contexto("navegador"))


async def test_a_javascript_page_is_read_by_navegador_and_not_by_http(site: str, fechar_navegador: None):
    pelo_http = await coletar_pagina({"url": f"{site}/js", "seletores": LISTA}, contexto())
    assert pelo_http["campos"] == {"itens": [], "titulo": "Ofertas"}
    result = await renderizar({"url": f"{site}/js", "seletores": LISTA, "esperar": "body[data-pronto]"})
    assert result["campos"] == {"itens": ["banana", "maca", "uva"], "titulo": "Ofertas"}
    assert result["status"] == 200 and result["titulo"] == "Ofertas"
    assert result["requisicoes"] >= 2  # the page and its fetch, both made by the worker


async def test_a_hanging_page_is_killed_at_its_deadline(site: str, fechar_navegador: None):
    await renderizar({"url": f"{site}/js"})  # the browser is up: the deadline measures the page only
    inicio = time.monotonic()
    with pytest.raises(Retry, match="was not done within 2s"):
        await renderizar({"url": f"{site}/trava", "timeout": 2})
    assert time.monotonic() - inicio < 2 + _chromium.FECHAR * 2
    assert not _girando(), "a renderer still runs the hanging page's script"
    result = await renderizar({"url": f"{site}/js", "seletores": LISTA, "esperar": "#lista li"})
    assert result["campos"]["itens"] == ["banana", "maca", "uva"]  # the worker goes on


def _vivo(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _girando() -> list[int]:
    """Processes under this one that used most of a CPU over the last second."""
    pids = _chromium.descendentes()

    def cpu(pid: int) -> int:
        try:
            campos = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0
        return int(campos[11]) + int(campos[12])

    antes = {pid: cpu(pid) for pid in pids}
    time.sleep(1.0)
    tick = os.sysconf("SC_CLK_TCK")
    return [pid for pid in pids if cpu(pid) - antes[pid] > 0.6 * tick]


async def test_the_address_policy_holds_for_every_request_of_the_page(
    monkeypatch: pytest.MonkeyPatch, fechar_navegador: None
):
    # Another loopback address serves the "internal" site; the worker refuses that one address.
    vistos: list[tuple[str, str]] = []
    with servir_paginas({"/segredo": ("text/plain", b"s"), "/pixel.png": ("image/png", b"")}, vistos,
                        host="127.0.0.2") as interno, servir_paginas(paginas(interno)) as site:  # fmt: skip
        monkeypatch.setenv(ENV_FETCH_DENY, "link-local,127.0.0.2/32")
        result = await renderizar({"url": f"{site}/vizinho", "esperar_rede": True})
        assert result["titulo"] == "recusado" and vistos == []
        with pytest.raises(EnderecoRecusado):
            await renderizar({"url": f"{interno}/segredo"})
        assert vistos == []


async def test_robots_txt_is_obeyed_by_the_browser_too(site: str, fechar_navegador: None):
    with pytest.raises(RobotsRecusado):
        await renderizar({"url": f"{site}/privado"})


async def test_a_screenshot_goes_under_the_salvar_dataset_root(
    site: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fechar_navegador: None
):
    monkeypatch.setenv("ORQ_DATASET_DIR", str(tmp_path))
    result = await renderizar({"url": f"{site}/js", "screenshot": True, "dataset": "capturas"})
    arquivo = Path(str(result["screenshot"]))
    assert arquivo.is_relative_to(tmp_path / "capturas" / "screenshots")
    assert arquivo.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(PermanentFailure):
        await renderizar({"url": f"{site}/js", "screenshot": True, "diretorio": "../fora"})


@pytest.mark.nats
@pytest.mark.slow
def test_a_worker_keeps_its_memory_flat_over_200_pages(nats_url: str, site: str):
    suffix = uuid.uuid4().hex[:8]
    os.environ["ORQ_NAVEGADOR_PAGINAS"] = "25"  # recycle contexts several times within the run
    try:
        worker = start_worker(nats_url, "navegador", suffix, builtin=True, concurrency=4)
    finally:
        del os.environ["ORQ_NAVEGADOR_PAGINAS"]
    amostras: list[tuple[int, float]] = []
    feitos = [0]
    parar = threading.Event()

    def medir() -> None:
        while not parar.wait(0.5):
            pids = [worker.pid, *_chromium.descendentes(worker.pid)]
            amostras.append((feitos[0], _chromium.memoria_mb(pids)))

    medidor = threading.Thread(target=medir, daemon=True)
    payload = {"url": f"{site}/js", "seletores": LISTA, "esperar": "#lista li"}
    try:
        with Orquestrador(nats_url, responder_para=f"res_nav_{suffix}") as orq:
            orq.iniciar_coleta("navegador", payload).wait(120)  # the browser starts
            medidor.start()
            for lote in range(4):
                jobs = orq.iniciar_coletas("navegador", [payload] * 50, progress=False).wait(300)
                assert all(j.status == "ok" for j in jobs), jobs.contagem()
                assert all(
                    j.result and j.result["campos"]["itens"] == ["banana", "maca", "uva"] for j in jobs
                )
                feitos[0] = 50 * (lote + 1)
        filhos = _chromium.descendentes(worker.pid)
    finally:
        parar.set()
        codigo = worker.stop()
    assert codigo == 0, worker.output()[-3000:]
    assert filhos, "the worker's browser was not found under it"
    fim = time.monotonic() + 20  # the driver sees the worker's pipe close and ends the browser
    while [pid for pid in filhos if _vivo(pid)] and time.monotonic() < fim:
        time.sleep(0.2)
    assert [pid for pid in filhos if _vivo(pid)] == [], "browser processes outlived the worker"
    primeira = [mb for n, mb in amostras if n <= 50]
    ultima = [mb for n, mb in amostras if n >= 150]
    pico = max(mb for _, mb in amostras)
    print(f"navegador worker memory (worker + browser, PSS): first 50 pages peak {max(primeira):.0f} MiB, "
          f"last 50 peak {max(ultima):.0f} MiB, overall peak {pico:.0f} MiB over 200 pages")  # fmt: skip
    assert max(ultima) < max(primeira) * 1.5 + 100, amostras


async def test_without_playwright_the_job_says_how_to_install_it(site: str, monkeypatch: pytest.MonkeyPatch):
    import sys

    from orquestrador.errors import ConfigError

    monkeypatch.setitem(sys.modules, "playwright.async_api", None)  # as if it were not installed
    with pytest.raises(ConfigError, match=r'pip install "orquestrador\[navegador\]"'):
        await renderizar({"url": f"{site}/js"})


async def test_a_long_temporary_directory_does_not_stop_the_browser(
    site: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fechar_navegador: None
):
    # Chromium puts a Unix socket in $TMPDIR; a long one (as under pytest or voila) broke its start.
    longo = tmp_path / ("t" * 90)
    longo.mkdir()
    monkeypatch.setenv("TMPDIR", str(longo))
    result = await renderizar({"url": f"{site}/js", "seletores": LISTA, "esperar": "#lista li"})
    assert result["campos"]["itens"] == ["banana", "maca", "uva"]


async def test_the_sites_session_reaches_the_browsers_requests_on_its_origin_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fechar_navegador: None
):
    from escavadores import _sessoes
    from tests.escavadores.servidor import servir

    with servir() as loja, servir() as outro:
        sessoes = tmp_path / "sessoes.toml"
        sessoes.write_text(f'[[sites]]\norigem = "{loja.url}"\nheaders = {{ X-Chave = "k-123" }}\n'
                           'cookies = { sessao = "s-456" }\n')  # fmt: skip
        monkeypatch.setenv(_sessoes.ENV_SESSIONS, str(sessoes))
        await renderizar({"url": f"{loja.url}/doc/http"})
        await renderizar({"url": f"{outro.url}/doc/http"})
    [na_loja] = [h for path, h in loja.pedidos if path == "/doc/http"]
    assert na_loja["x-chave"] == "k-123" and "sessao=s-456" in na_loja["cookie"]
    assert all("x-chave" not in h and "s-456" not in h.get("cookie", "") for _, h in outro.pedidos)
