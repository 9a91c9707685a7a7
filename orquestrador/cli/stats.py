"""``orq stats``: jobs, outcomes, throughput and latency per alvo, from this directory's store."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from orquestrador.cli import console
from orquestrador.cli.options import JsonOpt, existing_store, print_json

app = typer.Typer()


def _secs(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f}ms" if value < 1 else f"{value:.2f}s"


@app.command()
def stats(
    alvo: Annotated[str | None, typer.Option("--alvo", "-a", help="Only this escavador/executor.")] = None,
    since: Annotated[
        float | None, typer.Option("--since", help="Only jobs sent in the last N seconds.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Jobs, outcomes, throughput and latency per alvo from this directory's store."""
    from orquestrador.collector import read_health
    from orquestrador.settings import home
    from orquestrador.store import Store
    from orquestrador.store.stats import job_stats

    path = existing_store()
    desde = time.time() - since if since is not None else None
    jobs = Store(path).jobs(alvo=alvo, desde=desde)
    rows = job_stats((r["alvo"], r["estado"], r["enviado_em"], r["concluido_em"]) for r in jobs)
    saude = read_health(home())  # a live orchestrator that cannot write this store says so here
    if saude is not None:
        console.err().print(f"warning: {saude}", markup=False, highlight=False)
    if as_json:
        print_json(rows)
        return
    table = console.table(title=f"jobs in {path}")
    for column in ("alvo", "jobs", "ok", "erro", "dead-lettered", "pending", "jobs/s", "p50", "p95", "p99"):
        table.add_column(column, justify="left" if column == "alvo" else "right")
    for r in rows:
        rate = "-" if r["throughput"] is None else f"{r['throughput']:.2f}"
        table.add_row(r["alvo"], str(r["jobs"]), str(r["ok"]), str(r["erro"]), str(r["dead_lettered"]),
                      str(r["pending"]), rate, _secs(r["p50"]), _secs(r["p95"]), _secs(r["p99"]))  # fmt: skip
    console.wide().print(table, markup=False)
    if not rows:
        console.err().print("no jobs recorded")
