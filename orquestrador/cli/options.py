"""Options and helpers that several ``orq`` commands share, declared once.

Every command that talks to a broker takes the same ``--broker``; every listing the same
``--json``; every command that reads this directory's store finds it the same way.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from orquestrador.errors import ConfigError, OrquestradorError

if TYPE_CHECKING:
    from orquestrador.brokers.base import Broker

T = TypeVar("T")

BROKER_HELP = "Broker URL (default: $ORQ_BROKER_URL, else embedded NATS)."


def broker_flag(help: str = BROKER_HELP) -> Any:
    """``--broker/-b`` (``str | None``); a command may say in its own words what the broker is for."""
    return typer.Option("--broker", "-b", help=help)


def module_flag(help: str = "Import this module first (registers plugins).") -> Any:
    """``--module/-m`` (``list[str] | None``), repeatable: modules whose import registers plugins."""
    return typer.Option("--module", "-m", help=help)


BrokerOpt = Annotated[str | None, broker_flag()]
ModuleOpt = Annotated[list[str] | None, module_flag()]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of a table.")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
LogLevelOpt = Annotated[
    str | None, typer.Option("--log-level", help="DEBUG, INFO, WARNING… (default: $ORQ_LOG_LEVEL, else INFO)")
]
LogFormatOpt = Annotated[
    str | None,
    typer.Option(
        "--log-format", help="text, or json: one object per line (default: $ORQ_LOG_FORMAT, else text)"
    ),
]


def print_json(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2))


def import_modules(modules: list[str]) -> None:
    """Plugins registered by decorator exist only once their module ran (``--module``)."""
    if "" not in sys.path:
        sys.path.insert(0, "")  # --module finds modules in the current directory, like python -m
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(f"cannot import module {module!r}: {exc}") from None


def existing_store() -> Path:
    """This directory's store file, or an error saying where it was looked for."""
    from orquestrador.settings import store_path

    path = store_path()
    if not path.exists():
        raise OrquestradorError(
            f"no store at {path}: run jobs from this directory first, or set ORQ_HOME to where they ran"
        )
    return path


def with_broker(url: str | None, work: Callable[[Broker], Awaitable[T]]) -> T:
    """Connect, run ``work`` and close, in one event loop owned by this command."""
    from orquestrador.brokers import connect, resolve_url

    resolved = resolve_url(url)

    async def run() -> T:
        broker = await connect(resolved)
        try:
            return await work(broker)
        finally:
            await broker.close()

    return asyncio.run(run())
