"""``orq demo``, ``orq publish``, ``orq request``, ``orq trace`` and ``orq plugins``: jobs from the
command line.

Run the demo, launch a job (or a batch from a file), run one and wait for its answer, follow a
chain, list what can run.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated

import typer

from orquestrador import display
from orquestrador.cli import console
from orquestrador.cli.options import (
    AtrasoOpt,
    BrokerOpt,
    ExecutarEmOpt,
    ExpiraEmOpt,
    PrioridadeOpt,
    TtlOpt,
    timing,
)
from orquestrador.cli.publish import json_object, publish_file
from orquestrador.errors import JobTimeout, OrquestradorError
from orquestrador.plugins import registry
from orquestrador.vocabulary import PEDIDO_DE

app = typer.Typer()


@app.command()
def demo(
    jobs: Annotated[int, typer.Option("--jobs", "-n", min=1, help="How many coletas to launch.")] = 20,
    workers: Annotated[int, typer.Option(min=1, help="Escavador worker processes to start.")] = 2,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for every result.")] = 120.0,
    broker: BrokerOpt = None,
) -> None:
    """Scrape a local demo site through the broker with real workers; exit 0 if all came back ok."""
    from orquestrador.demo import run_demo

    ok = run_demo(jobs=jobs, workers=workers, timeout=timeout, broker=broker, console=console.wide())
    raise typer.Exit(0 if ok else 1)


# The envelopes a job starts with: iniciar_coleta, iniciar_execucao.
TipoEventoArg = StrEnum("TipoEventoArg", {tipo: tipo for tipo in PEDIDO_DE.values()})  # type: ignore[misc]


@app.command()
def publish(
    tipo_evento: Annotated[TipoEventoArg, typer.Argument(help="iniciar_coleta or iniciar_execucao")],
    alvo: Annotated[str, typer.Option("--alvo", "-a", help="Escavador/executor name.")],
    payload: Annotated[str, typer.Option("--payload", "-p", help="JSON object.")] = "{}",
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the result and print it.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait with --wait.")] = 60.0,
    correlation_id: Annotated[str | None, typer.Option(help="Join an existing chain.")] = None,
    broker: BrokerOpt = None,
    from_file: Annotated[
        str | None,
        typer.Option("--from-file", "-f", help="A JSON-lines file, one payload per line (- for stdin)."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="With --from-file: one JSON object per job, no progress bar.")
    ] = False,
    prioridade: PrioridadeOpt = None,
    atraso: AtrasoOpt = None,
    executar_em: ExecutarEmOpt = None,
    ttl: TtlOpt = None,
    expira_em: ExpiraEmOpt = None,
) -> None:
    """Publish one job and print its correlation_id (and its result with --wait), or a batch from a file.

    --prioridade, --atraso/--executar-em and --ttl/--expira-em: when and in what order it runs
    (for a batch, every job of it)."""
    from orquestrador.facade import Orquestrador

    when = timing(prioridade, atraso, executar_em, ttl, expira_em)
    if from_file is not None:
        if wait or correlation_id:
            raise OrquestradorError("--wait and --correlation-id are for one job, not a --from-file batch")
        publish_file(tipo_evento.value, alvo, from_file, broker, as_json=as_json, timing=when)
        return
    data = json_object(payload, "--payload", 'e.g. \'{"url": "https://…"}\'')
    with Orquestrador(broker) as orq:
        if tipo_evento.value == "iniciar_coleta":
            job = orq.iniciar_coleta(alvo, data, correlation_id=correlation_id, **when)
        else:
            job = orq.iniciar_execucao(alvo, data, correlation_id=correlation_id, **when)
        print(job.correlation_id)
        if not wait:
            return
        try:
            job.wait(timeout)
        except JobTimeout as exc:
            console.err().print(f"[red]error:[/] {exc}")
            raise typer.Exit(1) from None
        out = {"status": job.status, "tentativa": job.tentativa, "resultado": job.result, "erro": job.erro}
        print(json.dumps(out, ensure_ascii=False, indent=2))
        raise typer.Exit(0 if job.status == "ok" else 1)


class KindArg(StrEnum):
    coleta = "coleta"
    execucao = "execucao"


@app.command()
def request(
    kind: Annotated[KindArg, typer.Argument(help="coleta (an escavador) or execucao (an executor).")],
    alvo: Annotated[str, typer.Argument(help="Escavador/executor name.")],
    payload: Annotated[str, typer.Argument(help="JSON object.")] = "{}",
    timeout: Annotated[float, typer.Option(min=0.001, help="Seconds to wait for the result.")] = 30.0,
    broker: BrokerOpt = None,
) -> None:
    """Run one job and wait for it: its result as JSON (exit 1: it failed; 3: timed out).

    Exit codes: 0 the result is printed; 1 the job failed (its erro printed as JSON); 3 no
    result within --timeout (the job stays recorded and may still finish); 2 bad input or an
    unreachable broker.
    """
    from orquestrador.errors import JobFailed
    from orquestrador.facade import Orquestrador

    data = json_object(payload, "PAYLOAD", 'e.g. \'{"url": "https://…"}\'')
    with Orquestrador(broker) as orq:
        try:
            result = orq.solicitar(alvo, data, timeout, execucao=kind is KindArg.execucao)
        except JobFailed as exc:
            console.err().print(f"[red]failed:[/] {display.escape(str(exc), 2000)}", highlight=False)
            print(json.dumps({"message_id": exc.message_id, "estado": exc.estado, "erro": exc.erro},
                             ensure_ascii=False, indent=2))  # fmt: skip
            raise typer.Exit(1) from None
        except JobTimeout as exc:
            console.err().print(f"[yellow]timeout:[/] {display.escape(str(exc), 2000)}", highlight=False)
            raise typer.Exit(3) from None
    print(json.dumps(result, ensure_ascii=False, indent=2))


@app.command()
def trace(
    correlation_id: Annotated[str, typer.Argument(help="The chain to show.")],
) -> None:
    """Show every envelope and worker event of a chain recorded in this directory's store."""
    from datetime import UTC, datetime

    from orquestrador.settings import home, store_path
    from orquestrador.store import Store

    rows = Store(store_path()).trace(correlation_id)
    if not rows:
        raise OrquestradorError(f"nothing recorded for correlation_id {correlation_id!r} in {home()}")
    table = console.table(title=f"trace {correlation_id}")
    for column in ("time", "kind", "what", "alvo", "status", "attempt", "worker", "detail"):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(
            datetime.fromtimestamp(r["momento"], UTC).strftime("%H:%M:%S.%f")[:-3],
            r["tipo"], r["evento"], display.text(r["alvo"]), r["status"] or "",
            str(r["tentativa"] or ""), display.text(r["worker"]),
            display.text(r["detalhe"]) if r["detalhe"] else "",
        )  # fmt: skip
    console.wide().print(table, markup=False)


@app.command()
def plugins() -> None:
    """List the registered escavadores and executores and where each comes from."""
    table = console.table(title="plugins")
    for column in ("kind", "name", "queue", "source"):
        table.add_column(column)
    for p in registry.all():
        table.add_row(p.kind, p.nome, p.fila, p.origem)
    console.out().print(table)
