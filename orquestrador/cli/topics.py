"""``orq emit`` and ``orq subscribe``: topics from a shell, for scripts and for watching.

Both talk to the broker directly (no store, no results queue): a subscriber in a terminal must
not take results meant for a notebook. What arrives came from anyone on the broker, so it is
shown escaped and bounded like every other listing of ``orq``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Annotated, Any

import typer

from orquestrador import display
from orquestrador.cli.options import BrokerOpt, with_broker
from orquestrador.errors import ConfigError

app = typer.Typer()

HEADER_HELP = "A header KEY=VALUE for the message (repeatable)."
DURABLE_HELP = "A durable subscription's name: catch up on what was published while away."


@app.command()
def emit(
    topic: Annotated[str, typer.Argument(help="Topic to publish on, e.g. orders.created.")],
    data: Annotated[str, typer.Argument(help="The message's dados: any JSON value.")],
    header: Annotated[list[str] | None, typer.Option("--header", "-H", help=HEADER_HELP)] = None,
    correlation_id: Annotated[str | None, typer.Option(help="The chain it belongs to.")] = None,
    broker: BrokerOpt = None,
) -> None:
    """Publish one message on a topic and print its message_id."""
    from orquestrador.brokers.base import Broker
    from orquestrador.messaging import check_correlation_id
    from orquestrador.topics import TopicMessage, validate_topic

    try:
        dados = json.loads(data)
    except ValueError as exc:
        example = "e.g. '{\"id\": 7}' or '\"text\"'"
        raise ConfigError(f"the message is not valid JSON ({exc}): {example}") from None
    check_correlation_id(correlation_id)
    message = TopicMessage(validate_topic(topic), dados, headers=_headers(header or []),
                           correlation_id=correlation_id)  # fmt: skip
    body = message.encode()  # refused (too big, bad headers) before connecting

    async def work(b: Broker) -> None:
        await b.publish_topic(message.topico, body)

    with_broker(broker, work)
    print(message.message_id)


def _headers(pairs: list[str]) -> dict[str, str]:
    headers = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--header takes KEY=VALUE, not {pair!r}")
        headers[key] = value
    return headers


@app.command()
def subscribe(
    pattern: Annotated[str, typer.Argument(help="Topics to follow: '*' one token, '>' the rest (orq.>).")],
    durable: Annotated[str | None, typer.Option("--durable", help=DURABLE_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per message.")] = False,
    limit: Annotated[int | None, typer.Option("--limit", "-n", min=1, help="Stop after this many.")] = None,
    broker: BrokerOpt = None,
) -> None:
    """Print messages on the topics PATTERN matches as they arrive, until Ctrl-C (or --limit)."""
    from orquestrador.brokers.base import Broker
    from orquestrador.topics.patterns import validate_pattern
    from orquestrador.topics.subscription import AsyncAssinatura

    validate_pattern(pattern)

    async def work(b: Broker) -> int:
        seen = 0
        async with await AsyncAssinatura(pattern, duravel=durable).start(b) as sub:
            named = f" as {durable}" if durable else ""
            print(f"subscribed to {pattern}{named}", file=sys.stderr, flush=True)
            async for message in sub:
                print(_line(message.as_dict(), as_json), flush=True)
                seen += 1
                if limit is not None and seen >= limit:
                    break
        return seen

    try:
        with_broker(broker, work)
    except (KeyboardInterrupt, asyncio.CancelledError):
        raise typer.Exit(130) from None


def _line(data: dict[str, Any], as_json: bool) -> str:
    """A message as one line: JSON (dados kept whole when small and shallow) or for a person."""
    if as_json:
        body = json.dumps(data.get("dados"), ensure_ascii=False, default=str).encode()
        if display.parsed(body, 64 * 1024) is None:  # huge or too deep: shown as bounded text
            data = {**data, "dados": display.text(data.get("dados"), 4096)}
        return json.dumps(data, ensure_ascii=False)
    correlation = f" [{display.escape(data['correlation_id'], 64)}]" if data.get("correlation_id") else ""
    topic = display.escape(data["topico"], 200)
    return f"{data['timestamp'][11:23]} {topic}{correlation} {display.text(data.get('dados'))}"
