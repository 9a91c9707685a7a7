"""``orq``: the command line for people running workers and launching jobs.

Every failure the user can fix (bad URL, broker down, unknown plugin) ends as one red line and
exit code 2, never a traceback.
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from typing import Annotated

import typer

from orquestrador import cli_console, display
from orquestrador.cli_publish import json_object, publish_file
from orquestrador.cli_worker import worker_app
from orquestrador.errors import JobTimeout, OrquestradorError
from orquestrador.plugins import registry

app = typer.Typer(
    help="Launch scraping and execution jobs and run their workers on real brokers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
broker_app = typer.Typer(
    help="The configured broker, or the embedded NATS server of this directory.", no_args_is_help=True
)
app.add_typer(worker_app, name="worker")
app.add_typer(broker_app, name="broker")



BrokerOpt = Annotated[
    str | None,
    typer.Option("--broker", "-b", help="Broker URL (default: $ORQ_BROKER_URL, else embedded NATS)."),
]


class TipoEventoArg(StrEnum):
    iniciar_coleta = "iniciar_coleta"
    iniciar_execucao = "iniciar_execucao"


@app.command()
def demo(
    jobs: Annotated[int, typer.Option("--jobs", "-n", min=1, help="How many coletas to launch.")] = 20,
    workers: Annotated[int, typer.Option(min=1, help="Escavador worker processes to start.")] = 2,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for every result.")] = 120.0,
    broker: BrokerOpt = None,
) -> None:
    """Scrape a local demo site through the broker with real workers; exit 0 if all came back ok."""
    from orquestrador.demo import run_demo

    ok = run_demo(jobs=jobs, workers=workers, timeout=timeout, broker=broker, console=cli_console.wide())
    raise typer.Exit(0 if ok else 1)


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
) -> None:
    """Publish one job and print its correlation_id (and its result with --wait), or a batch from a file."""
    from orquestrador.facade import Orquestrador

    if from_file is not None:
        if wait or correlation_id:
            raise OrquestradorError("--wait and --correlation-id are for one job, not a --from-file batch")
        publish_file(tipo_evento.value, alvo, from_file, broker, as_json=as_json)
        return
    data = json_object(payload, "--payload", 'e.g. \'{"url": "https://…"}\'')
    with Orquestrador(broker) as orq:
        if tipo_evento is TipoEventoArg.iniciar_coleta:
            job = orq.iniciar_coleta(alvo, data, correlation_id=correlation_id)
        else:
            job = orq.iniciar_execucao(alvo, data, correlation_id=correlation_id)
        print(job.correlation_id)
        if not wait:
            return
        try:
            job.wait(timeout)
        except JobTimeout as exc:
            cli_console.err().print(f"[red]error:[/] {exc}")
            raise typer.Exit(1) from None
        out = {"status": job.status, "tentativa": job.tentativa, "resultado": job.result, "erro": job.erro}
        print(json.dumps(out, ensure_ascii=False, indent=2))
        raise typer.Exit(0 if job.status == "ok" else 1)


@app.command()
def trace(
    correlation_id: Annotated[str, typer.Argument(help="The chain to show.")],
) -> None:
    """Show every envelope and worker event of a chain recorded in this directory's store."""
    from orquestrador.settings import home
    from orquestrador.store import Store

    rows = Store(home() / "orquestrador.db").trace(correlation_id)
    if not rows:
        raise OrquestradorError(f"nothing recorded for correlation_id {correlation_id!r} in {home()}")
    table = cli_console.table(title=f"trace {correlation_id}")
    for column in ("time", "kind", "what", "alvo", "status", "attempt", "worker", "detail"):
        table.add_column(column, overflow="fold")
    from datetime import UTC, datetime

    for r in rows:
        table.add_row(
            datetime.fromtimestamp(r["momento"], UTC).strftime("%H:%M:%S.%f")[:-3],
            r["tipo"], r["evento"], display.text(r["alvo"]), r["status"] or "",
            str(r["tentativa"] or ""), display.text(r["worker"]),
            display.text(r["detalhe"]) if r["detalhe"] else "",
        )  # fmt: skip
    cli_console.wide().print(table, markup=False)


@broker_app.command("status")
def broker_status(broker: BrokerOpt = None) -> None:
    """Show the configured broker and whether it answers (a password or token shows as ***), or
    whether this directory's embedded NATS server runs, and where."""
    import asyncio

    from orquestrador.brokers import connect, embedded
    from orquestrador.settings import broker_url, home, redact_url

    configured = broker_url(broker)
    if configured is not None:
        cli_console.out().print(f"configured  {redact_url(configured)}", markup=False, highlight=False)

        async def ping() -> None:
            await (await connect(configured)).close()

        asyncio.run(ping())  # an unreachable broker ends as one redacted error line
        cli_console.out().print("reachable")
        return
    server = embedded.status()
    if server is None:
        cli_console.out().print(f"no embedded broker running for {home()}")
        raise typer.Exit(1)
    cli_console.out().print(f"running  {server.url}  pid {server.pid}  store {server.store_dir}")


@broker_app.command("stop")
def broker_stop() -> None:
    """Stop this directory's embedded NATS server (its data stays on disk)."""
    from orquestrador.brokers import embedded

    cli_console.out().print("stopped" if embedded.stop() else "no embedded broker was running")


@app.command()
def plugins() -> None:
    """List the registered escavadores and executores and where each comes from."""
    table = cli_console.table(title="plugins")
    for column in ("kind", "name", "queue", "source"):
        table.add_column(column)
    for p in registry.all():
        table.add_row(p.kind, p.nome, p.fila, p.origem)
    cli_console.out().print(table)


from orquestrador.cli_ops import register as _register_ops  # noqa: E402 - after the core commands

_register_ops(app)
from orquestrador.asyncapi import register as _register_asyncapi  # noqa: E402

_register_asyncapi(app)
from orquestrador.cli_store import register as _register_store  # noqa: E402

_register_store(app)


def main() -> None:
    try:
        app()
    except OrquestradorError as exc:
        cli_console.err().print(f"[red]error:[/] {exc}", markup=True, highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
