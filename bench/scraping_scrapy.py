"""Scrapy's side of the scraping row: one process, one spider, the same pages and the same work.

``python -m bench.scraping_scrapy --urls FILE --concurrency 32``. The spider extracts what the
``http`` escavador returns by default (title, description, h1–h3, absolute de-duplicated links,
visible-text length) with the same XPath expressions on parsel, obeys robots.txt like the
toolkit, and keeps the items in memory (no feed export). Timed from the crawl's start to the
last page parsed; prints ``BENCH_RESULT {...}``. Needs Scrapy: ``pip install "orquestrador[bench]"``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import cpu_seconds, emit

INVISIVEL = "self::script or self::style or self::noscript or self::template or self::svg"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scraping_scrapy")
    parser.add_argument("--urls", type=Path, required=True, help="one URL per line")
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args(argv)
    try:
        import scrapy
        from scrapy.crawler import CrawlerProcess
    except ImportError:
        emit({"error": 'scrapy is not installed: pip install "orquestrador[bench]"'})
        return 0
    urls = args.urls.read_text().split()
    tempos: dict[str, float] = {}
    itens: list[dict[str, Any]] = []

    class Loja(scrapy.Spider):
        name = "loja"
        start_urls = urls

        def parse(self, response: Any) -> Any:
            sel = response.selector
            links = dict.fromkeys(response.urljoin(h.strip()) for h in sel.xpath("//a/@href").getall())
            fora = sel.xpath(f"//body//*[{INVISIVEL}][not(ancestor::*[{INVISIVEL}])]")
            invisivel = sum(float(n.xpath("string-length(normalize-space(.))").get()) + 1 for n in fora)
            item = {
                "status": response.status, "url_final": response.url,
                "titulo": " ".join(sel.xpath("string(//title)").get().split()) or None,
                "descricao": sel.xpath("//meta[@name='description']/@content").get(),
                "headings": [{"nivel": h.root.tag, "texto": " ".join("".join(h.root.itertext()).split())}
                             for h in sel.xpath("//h1 | //h2 | //h3")],
                "links": [u for u in links if u.startswith(("http://", "https://"))],
                "tamanho_texto": float(sel.xpath("string-length(normalize-space(//body))").get()) - invisivel,
                "bytes": len(response.body),
            }  # fmt: skip
            itens.append(item)
            tempos["fim"] = time.perf_counter()
            yield item

    process = CrawlerProcess(settings={
        "CONCURRENT_REQUESTS": args.concurrency, "CONCURRENT_REQUESTS_PER_DOMAIN": args.concurrency,
        "DOWNLOAD_DELAY": 0, "ROBOTSTXT_OBEY": True, "LOG_LEVEL": "ERROR", "TELNETCONSOLE_ENABLED": False,
        "COOKIES_ENABLED": False, "RETRY_ENABLED": False, "USER_AGENT": "bench-scrapy",
    })  # fmt: skip
    cpu0 = cpu_seconds()
    process.crawl(Loja)
    tempos["inicio"] = time.perf_counter()
    process.start()
    segundos = tempos["fim"] - tempos["inicio"]
    emit({"pages": len(itens), "seconds": segundos, "rate": len(itens) / segundos,
          "cpu_seconds": (cpu_seconds() or 0) - (cpu0 or 0)})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
