"""The scraping row: the ``http`` escavador against Scrapy, one process each, same site, same run.

``python -m bench.scraping [--pages 200] [--concurrency 32] [--rounds 2] [--json FILE]``

A static site (:mod:`bench.scraping_site`, its own process) serves ~260 KiB product listings
and ~1 KiB articles. For each size and round, in alternating order:

- toolkit: one ``orq worker escavador http --concurrency 32`` process on the embedded NATS
  server; this process launches the pages with ``Orquestrador.iniciar_coletas`` and waits for
  every result, timed from the first publish to the last result recorded;
- Scrapy: one process with 32 concurrent requests (:mod:`bench.scraping_scrapy`), the same
  URLs and the same extraction, timed from the crawl's start to the last page parsed.

Both obey robots.txt and warm up first (the toolkit with a few jobs; Scrapy fetches robots.txt
inside its time). Pages per second and CPU seconds per page of the fetching process are
printed as a markdown table; the best round of each counts (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import ROOT, cpu_seconds, machine_info, parse_result
from bench.servers import broker_urls

TAMANHOS = {"grande": "~260 KiB listing", "pequena": "~1 KiB article"}


def _processo(args: list[str], **kw: Any) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, text=True, **kw)


def iniciar_site(pages: int) -> tuple[subprocess.Popen[str], str]:
    proc = _processo(["bench.scraping_site", "--pages", str(pages)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    linha = proc.stdout.readline().strip()
    if not linha.startswith("BENCH_SITE "):
        proc.kill()
        raise RuntimeError(f"the bench site did not start: {linha!r}")
    return proc, linha.split()[1]


def toolkit(url_broker: str, urls: list[str], concurrency: int, work: Path) -> dict[str, Any]:
    from orquestrador import Orquestrador

    log = open(work / f"worker-{uuid.uuid4().hex[:6]}.log", "w")  # noqa: SIM115 - closed below
    worker = _processo(
        ["orquestrador.cli", "worker", "escavador", "http", "--broker", url_broker,
         "--concurrency", str(concurrency)],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        fim = time.monotonic() + 60
        while "serving " not in Path(log.name).read_text():
            if worker.poll() is not None or time.monotonic() > fim:
                raise RuntimeError("the toolkit worker did not start: " + Path(log.name).read_text()[-500:])
            time.sleep(0.1)
        with Orquestrador(
            url_broker, responder_para=f"bench_scr_{uuid.uuid4().hex[:8]}", home=work / "h"
        ) as orq:
            aquecer = orq.iniciar_coletas("http", [{"url": u} for u in urls[:10]], progress=False).wait(120)
            assert all(j.status == "ok" for j in aquecer), aquecer.contagem()
            cpu0 = cpu_seconds(worker.pid) or 0.0
            inicio = time.perf_counter()
            lote = orq.iniciar_coletas("http", [{"url": u} for u in urls], progress=False).wait(600)
            segundos = time.perf_counter() - inicio
            cpu = (cpu_seconds(worker.pid) or 0.0) - cpu0
        ok = sum(1 for j in lote if j.status == "ok")
        return {"pages": ok, "seconds": segundos, "rate": ok / segundos, "cpu_seconds": cpu}
    finally:
        worker.terminate()
        worker.wait(30)
        log.close()


def scrapy(urls: list[str], concurrency: int, work: Path) -> dict[str, Any]:
    arquivo = work / "urls.txt"
    arquivo.write_text("\n".join(urls))
    proc = subprocess.run(
        [sys.executable, "-m", "bench.scraping_scrapy", "--urls", str(arquivo),
         "--concurrency", str(concurrency)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    result = parse_result(proc.stdout)
    if result is None:
        return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1][-300:]}
    return result


def _celula(r: dict[str, Any] | None) -> str:
    if not r or "rate" not in r:
        return (r or {}).get("error", "n/a")
    return f"{r['rate']:.1f} pages/s ({1000 * r['cpu_seconds'] / max(1, r['pages']):.1f} ms CPU/page)"


def tabela(report: dict[str, Any]) -> str:
    linhas = [
        "| pages | toolkit `http` worker, 1 process | Scrapy, 1 process | toolkit / Scrapy |",
        "| --- | --- | --- | --- |",
    ]
    for tamanho, descricao in TAMANHOS.items():
        r = report["sizes"].get(tamanho, {})
        tk, sc = r.get("toolkit"), r.get("scrapy")
        razao = f"{tk['rate'] / sc['rate']:.2f}" if tk and sc and "rate" in tk and "rate" in sc else "n/a"
        linhas.append(f"| {descricao} × {r.get('n', '?')} | {_celula(tk)} | {_celula(sc)} | {razao} |")
    return "\n".join(linhas)


def _melhor(a: dict[str, Any] | None, b: dict[str, Any]) -> dict[str, Any]:
    return b if a is None or b.get("rate", 0) > a.get("rate", 0) else a


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scraping", description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=200, help="pages of each size per run")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="orq-bench-scraping-"))
    site, base = iniciar_site(args.pages)
    report: dict[str, Any] = {"machine": machine_info(), "sizes": {}}
    try:
        with broker_urls(["nats"], {}, work) as urls_broker:
            for tamanho in TAMANHOS:
                urls = [f"{base}/{tamanho}/{i}" for i in range(args.pages)]
                melhor: dict[str, Any] = {"n": len(urls), "rodadas": []}
                for rodada in range(args.rounds):
                    ordem = ("toolkit", "scrapy") if rodada % 2 == 0 else ("scrapy", "toolkit")
                    for quem in ordem:
                        print(f"[bench.scraping] {tamanho} round {rodada + 1}: {quem} ...", file=sys.stderr)
                        if quem == "toolkit":
                            r = toolkit(urls_broker["nats"], urls, args.concurrency, work)
                        else:
                            r = scrapy(urls, args.concurrency, work)
                        melhor["rodadas"].append({quem: r})
                        melhor[quem] = _melhor(melhor.get(quem), r)
                report["sizes"][tamanho] = melhor
    finally:
        site.terminate()
        site.wait(10)
    print(tabela(report))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
