"""Your own escavador: a checked payload, progress, partial results and a polite retry.

``python examples/own_escavador.py``

An escavador is a named function ``payload -> result dict``. With a pydantic ``schema`` a bad
payload is dead-lettered with the reason before the handler runs; ``Retry(delay=…)`` asks for
another attempt (a site said 429); a generator yields partial results, kept in order and once
each (``job.partes``), and its result counts them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from _worker import running
from pydantic import BaseModel

from orquestrador import Contexto, Orquestrador, Retry, escavador


class Paginas(BaseModel):
    site: str
    paginas: int


@escavador("paginador", schema=Paginas, max_tentativas=3)
async def paginador(pedido: Paginas, ctx: Contexto) -> AsyncIterator[dict[str, Any]]:
    if ctx.tentativa == 1:
        raise Retry("the site asked us to slow down", delay=0.2)  # like an HTTP 429
    total = pedido.paginas  # with a schema the handler gets the checked model
    for n in range(1, total + 1):
        ctx.progress(n / total, f"página {n}")  # shows in traces and live views
        yield {"pagina": n, "itens": [f"{pedido.site}/{n}/{i}" for i in range(2)]}


def main() -> dict[str, Any]:
    with Orquestrador() as orq, running("escavador:paginador"):
        job = orq.iniciar_coleta("paginador", {"site": "loja.example", "paginas": 3}).wait(30)
        print(job.status, job.result, "after", job.tentativa, "attempts:", job.partes)
        assert job.status == "ok" and job.result == {"partes": 3} and job.tentativa == 2
        assert [parte["pagina"] for parte in job.partes] == [1, 2, 3]
        ruim = orq.iniciar_coleta("paginador", {"site": "loja.example"}).wait(30)  # no "paginas"
        print(ruim.status, ruim.erro)
        assert ruim.status in ("erro", "dead-lettered")
        return job.result or {}


if __name__ == "__main__":
    main()
