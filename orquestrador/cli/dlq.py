"""``orq dlq``: dead letters with why they died, and replaying them onto their queue."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from orquestrador import operations
from orquestrador.brokers.base import Broker, origin_of
from orquestrador.cli import console
from orquestrador.cli.messages import message_dict, opt
from orquestrador.cli.options import BrokerOpt, JsonOpt, print_json, with_broker
from orquestrador.cli.progress import bar

app = typer.Typer(
    name="dlq", help="Dead letters: list them and replay them onto their queue.", no_args_is_help=True
)


@app.command("list")
def dlq_list(
    queue: Annotated[str | None, typer.Argument(help="Queue (or its .dlq); default: every queue.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most this many per queue.")] = 100,
    broker: BrokerOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show each dead letter with why it died, so you can decide to fix, replay or purge."""

    async def work(b: Broker) -> list[dict[str, Any]]:
        return [{"queue": origin, **message_dict(m)}
                for origin, m in await operations.dead_letters(b, queue, limit)]  # fmt: skip

    rows = with_broker(broker, work)
    if as_json:
        print_json(rows)
        return
    table = console.table(title="dead letters")
    for column in ("queue", "message_id", "alvo", "reason", "error_type", "attempts", "at"):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(r["queue"], r["message_id"] or (f"raw: {r['raw']}" if r["raw"] else ""),
                      r["alvo"] or "", r["reason"] or "", r["error_type"] or "", opt(r["attempts"]),
                      r["dead_lettered_at"] or "")  # fmt: skip
    console.wide().print(table, markup=False)
    if not rows:
        console.err().print("no dead letters")


@app.command("replay")
def dlq_replay(
    queue: Annotated[str, typer.Argument(help="Queue whose dead letters go back (or its .dlq).")],
    limit: Annotated[int | None, typer.Option("--limit", "-n", min=1, help="At most this many.")] = None,
    message_id: Annotated[
        str | None, typer.Option("--id", help="Replay only the dead letter with this message_id.")
    ] = None,
    broker: BrokerOpt = None,
) -> None:
    """Move dead letters back onto their queue, once the cause of their failure is fixed."""
    origin = origin_of(queue)

    async def work(b: Broker) -> int:
        if message_id is not None:
            return await operations.replay(b, queue, message_id=message_id)
        waiting = (await b.stats(origin)).dead_letters if origin in await b.queues() else 0
        total = waiting if limit is None else min(limit, waiting)
        with bar(f"replaying onto {origin}", total, quiet=total < 200) as advance:
            done = 0

            def moved_so_far(moved: int) -> None:
                nonlocal done
                advance(moved - done)
                done = moved

            return await operations.replay(b, queue, limit=limit, progress=moved_so_far)

    moved = with_broker(broker, work)
    print(f"replayed {moved} dead letter(s) onto {origin}")
