"""``orq asyncapi``: write the AsyncAPI document of the envelopes, plugin queues and broker in use."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orquestrador.cli.options import broker_flag, import_modules, module_flag
from orquestrador.errors import ConfigError

app = typer.Typer()

OutputOpt = Annotated[Path | None, typer.Option("--output", "-o", help="Write here (default: stdout).")]
FormatOpt = Annotated[
    str | None,
    typer.Option("--format", "-f", help="json or yaml (default: from the --output extension, else json)."),
]
BrokerOpt = Annotated[
    str | None, broker_flag("Broker URL to describe (default: $ORQ_BROKER_URL, else embedded NATS).")
]
ModuleOpt = Annotated[list[str] | None, module_flag("Import plugins from this module first (repeatable).")]
ResultsOpt = Annotated[
    str | None,
    typer.Option(help="Results queue (default: $ORQ_RESULTS_QUEUE, else orquestrador_resultados)."),
]


@app.command()
def asyncapi(
    output: OutputOpt = None,
    fmt: FormatOpt = None,
    broker: BrokerOpt = None,
    module: ModuleOpt = None,
    results_queue: ResultsOpt = None,
) -> None:
    """Write an AsyncAPI 3.0 document of the envelopes, plugin queues and broker in use."""
    from orquestrador.asyncapi import document, render

    import_modules(module or [])
    chosen = fmt or ("yaml" if output is not None and output.suffix in (".yaml", ".yml") else "json")
    if chosen not in ("json", "yaml"):
        raise ConfigError(f"unknown format {chosen!r}: use json or yaml")
    text = render(document(broker, results_queue=results_queue), chosen)
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {output}", err=True)
