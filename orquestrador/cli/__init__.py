"""``orq``: the command line for people running workers and launching jobs.

Each module of this package holds one command or one group of them, as a ``typer.Typer`` named
``app``: a named one is a group (``orq queues …``), an unnamed one adds its commands at the top
level. :data:`COMMANDS` mounts them all, in the order ``orq --help`` lists them. Options that
several commands take are declared once, in :mod:`orquestrador.cli.options`.

Every failure the user can fix (bad URL, broker down, unknown plugin) ends as one red line and
exit code 2, never a traceback.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import Any

import typer

from orquestrador.errors import OrquestradorError

# The command modules, in the order ``orq --help`` lists them; imported when the app is built,
# so that ``orq worker`` loads only its own (a worker runs for days: the store, SQLite and the
# other commands were 2 MiB of its memory, measured).
COMMAND_MODULES = (
    "jobs", "topics", "consume", "stats", "asyncapi", "worker", "agenda", "broker", "queues", "dlq", "store",
)  # fmt: skip


def build(names: tuple[str, ...] = COMMAND_MODULES) -> typer.Typer:
    """The ``orq`` app with the commands of ``names`` (all of them by default)."""
    root = typer.Typer(
        help="Launch scraping and execution jobs and run their workers on real brokers.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )
    for module in _modules(names):
        root.add_typer(module.app)
    return root


def _modules(names: tuple[str, ...]) -> list[ModuleType]:
    return [importlib.import_module(f"orquestrador.cli.{name}") for name in names]


def __getattr__(name: str) -> Any:
    """``app`` (every command) and ``COMMANDS`` (their modules), built on first use."""
    if name == "app":
        value: Any = build()
    elif name == "COMMANDS":
        value = tuple(_modules(COMMAND_MODULES))
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def main() -> None:
    try:
        # `orq worker …` needs no other command; `orq worker --help` lists the same options.
        (build(("worker",)) if sys.argv[1:2] == ["worker"] else build())()
    except OrquestradorError as exc:
        from orquestrador.cli import console

        console.err().print(f"[red]error:[/] {exc}", markup=True, highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


__all__ = ["COMMANDS", "COMMAND_MODULES", "app", "build", "main"]
