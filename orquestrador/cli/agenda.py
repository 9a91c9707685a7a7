"""``orq agenda``: the schedules on the broker: adding, listing, pausing, resuming, removing.

Schedules are made here (``orq agenda add``) or from Python (``orq.agendar(...)``), checked by
the same :func:`orquestrador.agenda.make`, and fired by ``orq worker agenda``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from orquestrador import envelope as wire
from orquestrador import settings
from orquestrador.agenda import Agendas, listing, make
from orquestrador.agenda.model import DEFAULT_FUSO, DEFAULT_TOLERANCIA, Agenda
from orquestrador.brokers.base import Broker, validate_results_queue
from orquestrador.cli import console
from orquestrador.cli.options import BrokerOpt, JsonOpt, PrioridadeOpt, TtlOpt, print_json, with_broker
from orquestrador.cli.publish import json_object

app = typer.Typer(name="agenda", help="Schedules on the broker: add, list, pause, resume, remove.")

IdArg = Annotated[str, typer.Argument(metavar="ID", help="The schedule's id (`orq agenda list`).")]


def _when(epoch: object) -> str:
    if not isinstance(epoch, int | float):
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@app.command("add")
def add(
    kind: Annotated[str, typer.Argument(metavar="KIND", help="escavador or executor.")],
    alvo: Annotated[str, typer.Argument(metavar="ALVO", help="Escavador/executor name.")],
    payload: Annotated[str, typer.Argument(metavar="PAYLOAD_JSON", help="JSON object sent at each firing.")],
    cada: Annotated[
        str | None, typer.Option("--cada", help="Every interval: 10s, 30m, 1h, 1d, 1h30m.")
    ] = None,
    cron: Annotated[str | None, typer.Option("--cron", help="Cron expression, e.g. '0 6 * * *'.")] = None,
    fuso: Annotated[
        str, typer.Option("--fuso", help="IANA zone of --cron, e.g. America/Sao_Paulo.")
    ] = DEFAULT_FUSO,
    perdidas: Annotated[
        str, typer.Option("--perdidas", help="Missed beyond --tolerancia: uma (fire once) or nenhuma (skip).")
    ] = "uma",
    tolerancia: Annotated[
        float, typer.Option("--tolerancia", help="Seconds late an occurrence is still fired as it was.")
    ] = DEFAULT_TOLERANCIA,
    agenda_id: Annotated[
        str | None, typer.Option("--id", help="Its id (an existing one is replaced).")
    ] = None,
    prioridade: PrioridadeOpt = None,
    ttl: TtlOpt = None,
    results: Annotated[
        str | None,
        typer.Option("--results", help="Results queue of its firings (default: $ORQ_RESULTS_QUEUE)."),
    ] = None,
    broker: BrokerOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Make a schedule; prints its id and next firing (`orq worker agenda` fires it).

    --ttl: each firing expires unless started within that many seconds of its occurrence.
    """
    data = json_object(payload, "PAYLOAD_JSON", 'e.g. \'{"url": "https://…"}\'')
    responder_para = validate_results_queue(settings.results_queue(results) or wire.DEFAULT_RESULTS_QUEUE)
    # Checked before connecting: bad input never reaches the broker.
    agenda = make(
        kind, alvo, data, responder_para=responder_para, cada=cada, cron=cron, fuso=fuso,
        perdidas=perdidas, tolerancia=tolerancia, id=agenda_id, prioridade=prioridade, ttl=ttl,
    )  # fmt: skip

    async def work(connection: Broker) -> Agenda:
        return await Agendas(connection.shared_state()).save(agenda)

    saved = with_broker(broker, work)
    nxt = saved.next_after(saved.desde)
    if as_json:
        print_json({"id": saved.id, "quando": saved.quando, "proxima": nxt})
        return
    console.out().print(
        f"schedule {saved.id}: {saved.quando}, next {_when(nxt)}", highlight=False, soft_wrap=True
    )


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
    for column in ("id", "alvo", "tipo_evento", "when", "priority", "ttl", "state", "last", "next"):
        table.add_column(column)
    for row in rows:
        state = "paused" if row["pausada"] else "active"
        ttl = "-" if row["ttl"] is None else f"{row['ttl']:g} s"
        table.add_row(str(row["id"]), str(row["alvo"]), str(row["tipo_evento"]), str(row["quando"]),
                      str(row["prioridade"]), ttl, state,
                      _when(row["ultima"]), _when(row["proxima"]))  # fmt: skip
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
