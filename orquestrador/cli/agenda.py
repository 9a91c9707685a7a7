"""``orq agenda``: the schedules on the broker, and pausing, resuming or removing one.

Schedules are made from Python (``orq.agendar(...)``) and fired by ``orq worker agenda``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from orquestrador.agenda import Agendas, listing
from orquestrador.brokers.base import Broker
from orquestrador.cli import console
from orquestrador.cli.options import BrokerOpt, JsonOpt, print_json, with_broker

app = typer.Typer(name="agenda", help="Schedules on the broker: list, pause, resume, remove.")

IdArg = Annotated[str, typer.Argument(metavar="ID", help="The schedule's id (`orq agenda list`).")]


def _when(epoch: object) -> str:
    if not isinstance(epoch, int | float):
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@app.command("list")
def list_(broker: BrokerOpt = None, as_json: JsonOpt = False) -> None:
    """Every schedule with how it repeats, its last firing and its next one."""

    async def work(connection: Broker) -> list[dict[str, object]]:
        return await listing(Agendas(connection.shared_state()))

    rows = with_broker(broker, work)
    if as_json:
        print_json(rows)
        return
    table = console.table(title="schedules")
    for column in ("id", "alvo", "tipo_evento", "when", "state", "last", "next"):
        table.add_column(column)
    for row in rows:
        state = "paused" if row["pausada"] else "active"
        table.add_row(str(row["id"]), str(row["alvo"]), str(row["tipo_evento"]), str(row["quando"]),
                      state, _when(row["ultima"]), _when(row["proxima"]))  # fmt: skip
    console.out().print(table)


def _change(broker: str | None, agenda_id: str, verb: str) -> None:
    async def work(connection: Broker) -> None:
        agendas = Agendas(connection.shared_state())
        if verb == "pause":
            await agendas.pause(agenda_id)
        elif verb == "resume":
            await agendas.resume(agenda_id)
        else:
            await agendas.remove(agenda_id)

    with_broker(broker, work)
    done = {"pause": "paused", "resume": "resumed", "remove": "removed"}[verb]
    console.out().print(f"schedule {agenda_id} {done}", highlight=False)


@app.command("pause")
def pause(agenda_id: IdArg, broker: BrokerOpt = None) -> None:
    """Stop firing it; occurrences due while paused are not fired on resume."""
    _change(broker, agenda_id, "pause")


@app.command("resume")
def resume(agenda_id: IdArg, broker: BrokerOpt = None) -> None:
    """Fire it again from its next occurrence on."""
    _change(broker, agenda_id, "resume")


@app.command("remove")
def remove(agenda_id: IdArg, broker: BrokerOpt = None) -> None:
    """Delete it; jobs it fired and their results stay."""
    _change(broker, agenda_id, "remove")
