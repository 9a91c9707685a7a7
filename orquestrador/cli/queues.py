"""``orq queues``: every queue of the toolkit on the broker, and peeking into or purging one.

Nothing here is imported by a worker's start-up beyond the command table, and pandas is never
needed. Every listing has ``--json`` so scripts never parse tables.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from orquestrador import operations
from orquestrador.brokers.base import Broker, Message, QueueStats, dlq_of
from orquestrador.cli import console
from orquestrador.cli.messages import message_dict, message_table, opt
from orquestrador.cli.options import BrokerOpt, JsonOpt, YesOpt, print_json, with_broker
from orquestrador.cli.progress import spinner
from orquestrador.errors import OrquestradorError

app = typer.Typer(
    name="queues", help="Queues of the toolkit on the broker: list, peek, purge.", invoke_without_command=True
)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def _stats_dict(s: QueueStats) -> dict[str, Any]:
    return {
        "queue": s.queue,
        "dlq": dlq_of(s.queue),
        "depth": s.depth,
        "in_flight": s.in_flight,
        "consumers": s.consumers,
        "dead_letters": s.dead_letters,
        "oldest_age": s.oldest_age,
    }


@app.callback()
def queues(ctx: typer.Context, broker: BrokerOpt = None, as_json: JsonOpt = False) -> None:
    """List every queue of the toolkit with its dead-letter queue, so a glance shows what is stuck."""
    if ctx.invoked_subcommand is not None:
        return
    rows = with_broker(broker, operations.queue_overview)
    if as_json:
        print_json([_stats_dict(s) for s in rows])
        return
    table = console.table(title="queues")
    for column in ("queue", "depth", "in flight", "consumers", "dead letters", "oldest"):
        table.add_column(column, justify="left" if column == "queue" else "right")
    for s in rows:
        table.add_row(s.queue, str(s.depth), str(s.in_flight), opt(s.consumers),
                      str(s.dead_letters), _age(s.oldest_age))  # fmt: skip
    console.wide().print(table)


@app.command("peek")
def queues_peek(
    name: Annotated[str, typer.Argument(help="Queue to look into (a .dlq too).")],
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="How many of the oldest.")] = 10,
    broker: BrokerOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the oldest messages without consuming them, to see what is waiting before acting."""

    async def work(b: Broker) -> list[Message]:
        await operations.known_queue(b, name)
        return await b.peek(name, limit)

    rows = [message_dict(m) for m in with_broker(broker, work)]
    if as_json:
        print_json(rows)
        return
    message_table(f"peek {name}", rows)


@app.command("purge")
def queues_purge(
    name: Annotated[str, typer.Argument(help="Queue to empty (a .dlq too).")],
    yes: YesOpt = False,
    broker: BrokerOpt = None,
) -> None:
    """Drop every waiting message of one queue; asks first, because nothing brings them back."""
    if not yes and not sys.stdin.isatty():
        raise OrquestradorError(
            f"refusing to purge {name!r} without confirmation: no terminal to ask on; "
            "pass --yes to purge from a script"
        )

    async def work(b: Broker) -> int:
        await operations.known_queue(b, name)
        if not yes:
            depth = (await b.stats(name)).depth
            if not typer.confirm(f"drop {depth} waiting message(s) of {name}?", default=False):
                console.err().print(f"nothing purged: {name} left as it was")
                raise typer.Exit(1)
        with spinner(f"purging {name}…"):
            return await b.purge(name)

    dropped = with_broker(broker, work)
    print(f"dropped {dropped} message(s) from {name}")
