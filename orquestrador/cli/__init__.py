"""``orq``: the command line for people running workers and launching jobs.

Each module of this package holds one command or one group of them, as a ``typer.Typer`` named
``app``: a named one is a group (``orq queues …``), an unnamed one adds its commands at the top
level. :data:`COMMANDS` mounts them all, in the order ``orq --help`` lists them. Options that
several commands take are declared once, in :mod:`orquestrador.cli.options`.

Every failure the user can fix (bad URL, broker down, unknown plugin) ends as one red line and
exit code 2, never a traceback.
"""

from __future__ import annotations

import sys

import typer

from orquestrador.cli import (
    asyncapi,
    broker,
    console,
    consume,
    dlq,
    jobs,
    queues,
    stats,
    store,
    topics,
    worker,
)
from orquestrador.errors import OrquestradorError

COMMANDS = (jobs, topics, consume, stats, asyncapi, worker, broker, queues, dlq, store)

app = typer.Typer(
    help="Launch scraping and execution jobs and run their workers on real brokers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
for _module in COMMANDS:
    app.add_typer(_module.app)


def main() -> None:
    try:
        app()
    except OrquestradorError as exc:
        console.err().print(f"[red]error:[/] {exc}", markup=True, highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


__all__ = ["COMMANDS", "app", "main"]
