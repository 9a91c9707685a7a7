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
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from orquestrador.errors import ConfigError, OrquestradorError

if TYPE_CHECKING:
    from orquestrador.brokers.base import Broker
    from orquestrador.job_options import Timing

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

# When and in what order a launched job runs (orquestrador.job_options), the same on every
# command that launches: ``timing(...)`` turns them into the API's keywords.
PrioridadeOpt = Annotated[
    int | None, typer.Option("--prioridade", min=0, max=9, help="0 (default) to 9, 9 the most urgent.")
]
AtrasoOpt = Annotated[float | None, typer.Option("--atraso", help="Seconds to wait before starting it.")]
ExecutarEmOpt = Annotated[
    str | None,
    typer.Option(
        "--executar-em", help="Not before this ISO 8601 time with its offset, e.g. 2026-01-02T06:00-03:00."
    ),
]
TtlOpt = Annotated[float | None, typer.Option("--ttl", help="Seconds it may wait; never run after that.")]
ExpiraEmOpt = Annotated[
    str | None, typer.Option("--expira-em", help="Never run after this ISO 8601 time with its offset.")
]


def timing(
    prioridade: int | None,
    atraso: float | None,
    executar_em: str | None,
    ttl: float | None,
    expira_em: str | None,
) -> Timing:
    """The launch keywords from the command line's options, checked as the API checks them."""
    from orquestrador.job_options import JobOptions

    out: Timing = {
        "prioridade": prioridade, "atraso": atraso, "ttl": ttl,
        "executar_em": _moment(executar_em, "--executar-em"), "expira_em": _moment(expira_em, "--expira-em"),
    }  # fmt: skip
    JobOptions.of(**out)  # a bad combination fails before connecting
    return out


def _moment(text: str | None, flag: str) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            f"{flag} {text!r} is not an ISO 8601 time, e.g. 2026-01-02T06:00:00-03:00"
        ) from None
    if moment.tzinfo is None:
        raise ConfigError(f"{flag} {text!r} has no UTC offset: add one, e.g. {text}-03:00 or {text}Z")
    return moment


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
