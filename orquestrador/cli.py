"""``orq``: the command line for people running workers and launching jobs.

Every failure the user can fix (bad URL, broker down, unknown plugin) ends as one red line and
exit code 2, never a traceback.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import signal
import sys
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from orquestrador.errors import JobTimeout, OrquestradorError
from orquestrador.plugins import Kind, registry
from orquestrador.settings import redact_url

app = typer.Typer(
    help="Launch scraping and execution jobs and run their workers on real brokers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
worker_app = typer.Typer(help="Run a worker for one escavador or executor.", no_args_is_help=True)
broker_app = typer.Typer(help="The embedded NATS server of this directory.", no_args_is_help=True)
app.add_typer(worker_app, name="worker")
app.add_typer(broker_app, name="broker")

console = Console()
err = Console(stderr=True)


def _wide() -> Console:
    """Piped output (logs, scripts) gets tables wide enough for full ids, not 80 columns."""
    return console if console.is_terminal else Console(width=160)


BrokerOpt = Annotated[
    str | None,
    typer.Option("--broker", "-b", help="Broker URL (default: $ORQ_BROKER_URL, else embedded NATS)."),
]


class TipoEventoArg(StrEnum):
    iniciar_coleta = "iniciar_coleta"
    iniciar_execucao = "iniciar_execucao"


def _setup_logging(level: str, fmt: str = "text") -> None:
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("nats").setLevel(logging.WARNING)


@app.command()
def demo(
    jobs: Annotated[int, typer.Option("--jobs", "-n", min=1, help="How many coletas to launch.")] = 20,
    workers: Annotated[int, typer.Option(min=1, help="Escavador worker processes to start.")] = 2,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for every result.")] = 120.0,
    broker: BrokerOpt = None,
) -> None:
    """Scrape a local demo site through the broker with real workers; exit 0 if all came back ok."""
    from orquestrador.demo import run_demo

    ok = run_demo(jobs=jobs, workers=workers, timeout=timeout, broker=broker, console=_wide())
    raise typer.Exit(0 if ok else 1)


def _import_modules(modules: list[str]) -> None:
    if "" not in sys.path:
        sys.path.insert(0, "")  # --module finds modules in the current directory
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise OrquestradorError(f"cannot import module {module!r}: {exc}") from None


def _run_worker(
    kind: Kind,
    name: str,
    broker: str | None,
    modules: list[str],
    overrides: dict[str, Any],
    visibility_timeout: float,
    log_level: str,
) -> None:
    import dataclasses

    from orquestrador.brokers import connect, resolve_url
    from orquestrador.worker import Worker, WorkerOptions

    _setup_logging(log_level)
    _import_modules(modules)
    # Options given on the command line win over the plugin's decorator, which wins over defaults.
    plugin = dataclasses.replace(
        registry.get(kind, name), **{k: v for k, v in overrides.items() if v is not None}
    )
    if plugin.rate_limit and plugin.rate_key is None and kind == "escavador":
        from orquestrador.plugins import domain_of

        plugin = dataclasses.replace(plugin, rate_key=domain_of)
    options = WorkerOptions(visibility_timeout=visibility_timeout)
    url = resolve_url(broker)

    async def serve() -> None:
        connection = await connect(url)
        try:
            await Worker(connection, [plugin], options).run_until_signal()
        finally:
            await connection.close()

    logging.getLogger("orquestrador.worker").info("connecting to %s", redact_url(url))
    asyncio.run(serve())


def _worker_command(kind: Kind) -> Any:
    def command(
        name: Annotated[str, typer.Argument(help="The plugin name, e.g. http.")],
        broker: BrokerOpt = None,
        concurrency: Annotated[
            int | None, typer.Option("--concurrency", "-c", min=1, help="Jobs at once [plugin's, else 8].")
        ] = None,
        module: Annotated[
            list[str] | None,
            typer.Option("--module", "-m", help="Import this module first (registers plugins)."),
        ] = None,
        max_tentativas: Annotated[
            int | None, typer.Option(min=1, help="Attempts before the DLQ [plugin's, else 5].")
        ] = None,
        timeout: Annotated[
            float | None, typer.Option(min=0.001, help="Seconds a job may run [plugin's, else none].")
        ] = None,
        rate_limit: Annotated[
            float | None,
            typer.Option(min=0.001, help="Jobs per second (per domain for escavadores) [plugin's]."),
        ] = None,
        visibility_timeout: Annotated[
            float, typer.Option(min=0.5, help="Seconds before a dead worker's job is redelivered.")
        ] = 30.0,
        log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING…")] = "INFO",
    ) -> None:
        overrides = {"concurrency": concurrency, "max_tentativas": max_tentativas,
                     "timeout": timeout, "rate_limit": rate_limit}  # fmt: skip
        _run_worker(kind, name, broker, module or [], overrides, visibility_timeout, log_level)

    command.__doc__ = f"Serve {kind}_NAME until SIGINT/SIGTERM (then drain and exit)."
    return command


worker_app.command("escavador")(_worker_command("escavador"))
worker_app.command("executor")(_worker_command("executor"))


@worker_app.command("pipeline")
def worker_pipeline(
    name: Annotated[str, typer.Argument(help="The pipeline's name.")],
    module: Annotated[
        list[str] | None, typer.Option("--module", "-m", help="Module that declares the pipeline.")
    ] = None,
    broker: BrokerOpt = None,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING…")] = "INFO",
) -> None:
    """Run a pipeline's rules (pipeline_NAME) so they outlive the notebook that declared them."""
    from orquestrador.brokers import connect, resolve_url
    from orquestrador.pipeline import PipelineRunner, get_pipeline

    _setup_logging(log_level)
    _import_modules(module or [])
    pipeline = get_pipeline(name)
    url = resolve_url(broker)

    async def serve() -> None:
        connection = await connect(url)
        runner = PipelineRunner(connection, pipeline)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, runner.stop)
        try:
            await runner.run()
        finally:
            await connection.close()

    asyncio.run(serve())


@app.command()
def publish(
    tipo_evento: Annotated[TipoEventoArg, typer.Argument(help="iniciar_coleta or iniciar_execucao")],
    alvo: Annotated[str, typer.Option("--alvo", "-a", help="Escavador/executor name.")],
    payload: Annotated[str, typer.Option("--payload", "-p", help="JSON object.")] = "{}",
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the result and print it.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait with --wait.")] = 60.0,
    correlation_id: Annotated[str | None, typer.Option(help="Join an existing chain.")] = None,
    broker: BrokerOpt = None,
) -> None:
    """Publish one job and print its correlation_id (and its result with --wait)."""
    from orquestrador.facade import Orquestrador

    try:
        data = json.loads(payload)
    except ValueError as exc:
        raise OrquestradorError(f"--payload is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise OrquestradorError('--payload must be a JSON object, e.g. \'{"url": "https://…"}\'')
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
            err.print(f"[red]error:[/] {exc}")
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
    table = Table(title=f"trace {correlation_id}")
    for column in ("time", "kind", "what", "alvo", "status", "attempt", "worker", "detail"):
        table.add_column(column, overflow="fold")
    from datetime import UTC, datetime

    for r in rows:
        table.add_row(
            datetime.fromtimestamp(r["momento"], UTC).strftime("%H:%M:%S.%f")[:-3],
            r["tipo"], r["evento"], r["alvo"] or "", r["status"] or "",
            str(r["tentativa"] or ""), r["worker"] or "",
            json.dumps(r["detalhe"], ensure_ascii=False) if r["detalhe"] else "",
        )  # fmt: skip
    _wide().print(table, markup=False)


@broker_app.command("status")
def broker_status() -> None:
    """Show whether this directory's embedded NATS server runs, and where."""
    from orquestrador.brokers import embedded
    from orquestrador.settings import home

    server = embedded.status()
    if server is None:
        console.print(f"no embedded broker running for {home()}")
        raise typer.Exit(1)
    console.print(f"running  {server.url}  pid {server.pid}  store {server.store_dir}")


@broker_app.command("stop")
def broker_stop() -> None:
    """Stop this directory's embedded NATS server (its data stays on disk)."""
    from orquestrador.brokers import embedded

    console.print("stopped" if embedded.stop() else "no embedded broker was running")


@app.command()
def plugins() -> None:
    """List the registered escavadores and executores and where each comes from."""
    table = Table(title="plugins")
    for column in ("kind", "name", "queue", "source"):
        table.add_column(column)
    for p in registry.all():
        table.add_row(p.kind, p.nome, p.fila, p.origem)
    console.print(table)


from orquestrador.cli_ops import register as _register_ops  # noqa: E402 - after the core commands

_register_ops(app)
from orquestrador.asyncapi import register as _register_asyncapi  # noqa: E402

_register_asyncapi(app)


def main() -> None:
    try:
        app()
    except OrquestradorError as exc:
        err.print(f"[red]error:[/] {exc}", markup=True, highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
