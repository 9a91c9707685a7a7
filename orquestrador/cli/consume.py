"""``orq consume``: take messages off a queue and print them, for debugging."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from orquestrador import operations
from orquestrador.brokers.base import Broker, Delivery
from orquestrador.cli import console
from orquestrador.cli.messages import body_text, describe, message_table
from orquestrador.cli.options import BrokerOpt, JsonOpt, print_json, with_broker

app = typer.Typer()


@app.command()
def consume(
    queue: Annotated[str, typer.Argument(help="Queue to take messages from.")],
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Stop after this many.")] = 1,
    no_ack: Annotated[
        bool, typer.Option("--no-ack", help="Give them back (nack) instead of acking them.")
    ] = False,
    wait: Annotated[float, typer.Option(min=0.1, help="Seconds to wait for a message.")] = 2.0,
    broker: BrokerOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Take messages off a queue and print them: for debugging, it acks them unless --no-ack."""

    async def work(b: Broker) -> list[dict[str, Any]]:
        await operations.known_queue(b, queue)
        consumer = await b.consume(queue, visibility_timeout=60.0, prefetch=min(limit, 256))
        taken: list[Delivery] = []
        out: list[dict[str, Any]] = []
        try:
            while len(taken) < limit:
                batch = await consumer.fetch(min(64, limit - len(taken)), timeout=wait)
                if not batch:
                    break
                need = limit - len(taken)
                for delivery in batch[:need]:
                    taken.append(delivery)
                    out.append({**describe(delivery.body, delivery.headers, delivery.message_id or ""),
                                "attempt": delivery.attempt, "body": body_text(delivery.body)})  # fmt: skip
                for extra in batch[need:]:  # a broker may hand over more than asked
                    await extra.nack()
            for delivery in taken:
                if no_ack:
                    await delivery.nack()
                else:
                    await delivery.ack()
        finally:
            await consumer.close()
        return out

    rows = with_broker(broker, work)
    if as_json:
        print_json(rows)
        return
    message_table(f"consumed from {queue}", rows)
    console.err().print(f"{len(rows)} message(s) {'given back' if no_ack else 'acked'}")
