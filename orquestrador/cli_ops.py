"""Operations commands of ``orq``: look into queues and dead letters, move them, measure jobs.

Kept apart from :mod:`orquestrador.cli` so the worker's start-up path stays small: nothing here
is imported by ``orq worker``, and pandas is never needed (statistics are plain Python).
Every listing has ``--json`` so scripts never parse tables.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any, TypeVar

import typer

from orquestrador import cli_console, display
from orquestrador.brokers.base import (
    DLQ_AT,
    DLQ_ATTEMPTS,
    DLQ_ERROR_TYPE,
    DLQ_REASON,
    Broker,
    Delivery,
    Message,
    QueueStats,
    dlq_of,
    origin_of,
    strip_dead_letter_headers,
)
from orquestrador.cli_progress import bar, spinner
from orquestrador.errors import ConfigError, OrquestradorError
from orquestrador.vocabulary import PENDENTES

T = TypeVar("T")

queues_app = typer.Typer(
    help="Queues of the toolkit on the broker: list, peek, purge.", invoke_without_command=True
)
dlq_app = typer.Typer(help="Dead letters: list them and replay them onto their queue.", no_args_is_help=True)


BrokerOpt = Annotated[
    str | None,
    typer.Option("--broker", "-b", help="Broker URL (default: $ORQ_BROKER_URL, else embedded NATS)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of a table.")]

_PEEK_FIELDS = ("message_id", "tipo_evento", "correlation_id", "alvo")


class UnknownQueue(ConfigError):
    """The queue named on the command line is not one the toolkit declared on this broker."""


def _print_json(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2))


def _with_broker(url: str | None, work: Callable[[Broker], Awaitable[T]]) -> T:
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


async def _known_queue(broker: Broker, name: str) -> str:
    """``name`` if the toolkit declared it, else an error that lists the queues that exist."""
    from orquestrador.brokers.base import validate_queue_name

    validate_queue_name(name)
    existing = await broker.queues()
    if name in existing:
        return name
    origins = sorted({origin_of(n) for n in existing})
    shown = ", ".join(origins[:30]) + (" …" if len(origins) > 30 else "")
    raise UnknownQueue(
        f"no queue {name!r} on this broker; existing queues (each with a .dlq): {shown or 'none'}"
        " (see `orq queues`)"
    )


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def _opt(value: int | None) -> str:
    return "-" if value is None else str(value)


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


# -- orq queues --------------------------------------------------------------------------------


@queues_app.callback()
def queues(ctx: typer.Context, broker: BrokerOpt = None, as_json: JsonOpt = False) -> None:
    """List every queue of the toolkit with its dead-letter queue, so a glance shows what is stuck."""
    if ctx.invoked_subcommand is not None:
        return

    async def work(b: Broker) -> list[QueueStats]:
        names = await b.queues()
        origins = sorted({origin_of(n) for n in names})
        return [await b.stats(q) for q in origins]

    rows = _with_broker(broker, work)
    if as_json:
        _print_json([_stats_dict(s) for s in rows])
        return
    table = cli_console.table(title="queues")
    for column in ("queue", "depth", "in flight", "consumers", "dead letters", "oldest"):
        table.add_column(column, justify="left" if column == "queue" else "right")
    for s in rows:
        table.add_row(s.queue, str(s.depth), str(s.in_flight), _opt(s.consumers),
                      str(s.dead_letters), _age(s.oldest_age))  # fmt: skip
    cli_console.wide().print(table)


def _escape(body: bytes, limit: int = 120) -> str:
    return display.text(body[: limit + 4], limit)


def _shown(value: Any, limit: int = 200) -> str | None:
    """A field of broker content as a person may see it: text, escaped, bounded (None stays)."""
    return None if value is None else display.text(value, limit)


def _describe(body: bytes, headers: dict[str, str], message_id: str = "") -> dict[str, Any]:
    """The envelope fields a person looks for, or the raw bytes when the body is not one.

    Everything comes from some publisher: shown truncated and escaped, whatever its depth or size.
    """
    out: dict[str, Any] = {field: None for field in _PEEK_FIELDS}
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        data = None
    if isinstance(data, dict):
        for field in _PEEK_FIELDS:
            out[field] = _shown(data.get(field))
        out["raw"] = None
    else:
        out["raw"] = _escape(body)
    if out["message_id"] is None and message_id:
        out["message_id"] = _shown(message_id)
    out["reason"] = _shown(headers.get(DLQ_REASON), 2000)
    out["error_type"] = _shown(headers.get(DLQ_ERROR_TYPE))
    attempts = headers.get(DLQ_ATTEMPTS)
    out["attempts"] = int(attempts) if attempts and attempts.isascii() and attempts.isdigit() and \
        len(attempts) < 10 else _shown(attempts)  # fmt: skip
    out["dead_lettered_at"] = _shown(headers.get(DLQ_AT))
    out["size"] = len(body)
    return out


def _message_dict(m: Message) -> dict[str, Any]:
    return _describe(m.body, m.headers)


@queues_app.command("peek")
def queues_peek(
    name: Annotated[str, typer.Argument(help="Queue to look into (a .dlq too).")],
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="How many of the oldest.")] = 10,
    broker: BrokerOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the oldest messages without consuming them, to see what is waiting before acting."""

    async def work(b: Broker) -> list[Message]:
        await _known_queue(b, name)
        return await b.peek(name, limit)

    rows = [_message_dict(m) for m in _with_broker(broker, work)]
    if as_json:
        _print_json(rows)
        return
    _message_table(f"peek {name}", rows)


def _message_table(title: str, rows: Sequence[dict[str, Any]], *, dead: bool | None = None) -> None:
    show_dead = any(r["reason"] or r["attempts"] for r in rows) if dead is None else dead
    table = cli_console.table(title=title)
    columns = ["message_id", "tipo_evento", "correlation_id", "alvo"]
    if show_dead:
        columns += ["reason", "error_type", "attempts"]
    for column in columns:
        table.add_column(column, overflow="fold")
    for r in rows:
        if r.get("raw") is not None:
            cells = [r["message_id"] or "", f"raw: {r['raw']}", "", ""]
        else:
            cells = [r[c] or "" for c in ("message_id", "tipo_evento", "correlation_id", "alvo")]
        if show_dead:
            cells += [r["reason"] or "", r["error_type"] or "", _opt(r["attempts"])]
        table.add_row(*[str(c) for c in cells])
    cli_console.wide().print(table, markup=False)
    if not rows:
        cli_console.err().print("(empty)")


@queues_app.command("purge")
def queues_purge(
    name: Annotated[str, typer.Argument(help="Queue to empty (a .dlq too).")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    broker: BrokerOpt = None,
) -> None:
    """Drop every waiting message of one queue; asks first, because nothing brings them back."""
    if not yes and not sys.stdin.isatty():
        raise OrquestradorError(
            f"refusing to purge {name!r} without confirmation: no terminal to ask on; "
            "pass --yes to purge from a script"
        )

    async def work(b: Broker) -> int:
        await _known_queue(b, name)
        if not yes:
            depth = (await b.stats(name)).depth
            if not typer.confirm(f"drop {depth} waiting message(s) of {name}?", default=False):
                cli_console.err().print(f"nothing purged: {name} left as it was")
                raise typer.Exit(1)
        with spinner(f"purging {name}…"):
            return await b.purge(name)

    dropped = _with_broker(broker, work)
    print(f"dropped {dropped} message(s) from {name}")


# -- orq dlq -----------------------------------------------------------------------------------


@dlq_app.command("list")
def dlq_list(
    queue: Annotated[str | None, typer.Argument(help="Queue (or its .dlq); default: every queue.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most this many per queue.")] = 100,
    broker: BrokerOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show each dead letter with why it died, so you can decide to fix, replay or purge."""

    async def work(b: Broker) -> list[dict[str, Any]]:
        names = await b.queues()
        if queue is not None:
            target = dlq_of(queue)
            if target not in names and origin_of(queue) not in names:
                await _known_queue(b, queue)
            dlqs = [target]
        else:
            dlqs = sorted({dlq_of(n) for n in names})
        out = []
        for d in dlqs:
            if queue is None and not (await b.stats(origin_of(d))).dead_letters:
                continue
            for m in await b.peek(d, limit):
                out.append({"queue": origin_of(d), **_message_dict(m)})
        return out

    rows = _with_broker(broker, work)
    if as_json:
        _print_json(rows)
        return
    table = cli_console.table(title="dead letters")
    for column in ("queue", "message_id", "alvo", "reason", "error_type", "attempts", "at"):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(r["queue"], r["message_id"] or (f"raw: {r['raw']}" if r["raw"] else ""),
                      r["alvo"] or "", r["reason"] or "", r["error_type"] or "", _opt(r["attempts"]),
                      r["dead_lettered_at"] or "")  # fmt: skip
    cli_console.wide().print(table, markup=False)
    if not rows:
        cli_console.err().print("no dead letters")


def _envelope_id(delivery: Delivery) -> str | None:
    try:
        data = json.loads(delivery.body)
    except (ValueError, RecursionError):
        data = None
    if isinstance(data, dict) and isinstance(data.get("message_id"), str):
        return str(data["message_id"])
    return delivery.message_id


async def replay_by_id(broker: Broker, queue: str, message_id: str) -> int:
    """Replay only the dead letter whose envelope ``message_id`` matches; the others stay.

    Every dead letter fetched is held unsettled until the match is found, then the others are
    nacked back, so none is lost and none is seen twice while searching.
    """
    source, target = dlq_of(queue), origin_of(queue)
    total = (await broker.stats(target)).dead_letters
    if total <= 0:
        return 0
    consumer = await broker.consume(source, visibility_timeout=120.0, prefetch=max(16, min(total, 1000)))
    held: list[Delivery] = []
    found = 0
    try:
        while len(held) < total and not found:
            batch = await consumer.fetch(min(64, total - len(held)), timeout=1.0)
            if not batch:
                break
            for delivery in batch:
                if not found and _envelope_id(delivery) == message_id:
                    # No message_id: publish-side dedup (RabbitMQ's per connection) would drop a
                    # replay of a job this process sent in the last two minutes.
                    headers = strip_dead_letter_headers(delivery.headers)
                    await broker.publish(target, delivery.body, headers=headers)
                    await delivery.ack()
                    found = 1
                else:
                    held.append(delivery)
    finally:
        for delivery in held:
            await delivery.nack()
        await consumer.close()
    return found


@dlq_app.command("replay")
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
        names = await b.queues()
        if origin not in names and dlq_of(origin) not in names:
            await _known_queue(b, queue)
        if message_id is not None:
            moved = await replay_by_id(b, origin, message_id)
            if not moved:
                total = (await b.stats(origin)).dead_letters
                raise OrquestradorError(
                    f"no dead letter with message_id {message_id!r} among the {total} in "
                    f"{dlq_of(origin)} (see `orq dlq list {origin}`; a search looks at up to 1000)"
                )
            return moved
        waiting = (await b.stats(origin)).dead_letters
        total = waiting if limit is None else min(limit, waiting)
        with bar(f"replaying onto {origin}", total, quiet=total < 200) as advance:
            done = 0

            def moved_so_far(moved: int) -> None:
                nonlocal done
                advance(moved - done)
                done = moved

            # One replay, bounded by the dead letters there now: a worker failing them again
            # while it runs must neither make it loop nor count them twice.
            return await b.replay(origin, limit=limit, progress=moved_so_far)

    moved = _with_broker(broker, work)
    print(f"replayed {moved} dead letter(s) onto {origin}")


# -- orq consume -------------------------------------------------------------------------------


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
        await _known_queue(b, queue)
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
                    out.append({**_describe(delivery.body, delivery.headers, delivery.message_id or ""),
                                "attempt": delivery.attempt, "body": _body_text(delivery.body)})  # fmt: skip
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

    rows = _with_broker(broker, work)
    if as_json:
        _print_json(rows)
        return
    _message_table(f"consumed from {queue}", rows)
    cli_console.err().print(f"{len(rows)} message(s) {'given back' if no_ack else 'acked'}")


def _body_text(body: bytes) -> Any:
    data = display.parsed(body)  # small and shallow JSON as a structure; anything else as text
    return _escape(body, 4096) if data is None else data


# -- orq stats ---------------------------------------------------------------------------------


def _percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile: a latency that some job really had."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def job_stats(rows: Sequence[Any]) -> list[dict[str, Any]]:
    """Per-alvo counts, throughput and latency from store rows (plain Python: no pandas)."""
    groups: dict[str, list[Any]] = {}
    for r in rows:
        groups.setdefault(r["alvo"] or "-", []).append(r)
    out = []
    for alvo, items in sorted(groups.items()):
        states = [r["estado"] for r in items]
        latencies = [r["concluido_em"] - r["enviado_em"] for r in items
                     if r["concluido_em"] is not None and r["enviado_em"] is not None]  # fmt: skip
        starts = [r["enviado_em"] for r in items if r["enviado_em"] is not None]
        ends = [r["concluido_em"] for r in items if r["concluido_em"] is not None]
        done = len(ends)
        span = (max(ends) - min(starts)) if ends and starts else 0.0
        out.append({
            "alvo": alvo,
            "jobs": len(items),
            "ok": states.count("ok"),
            "erro": states.count("erro"),
            "dead_lettered": states.count("dead-lettered"),
            "pending": sum(1 for s in states if s in PENDENTES),
            "throughput": done / span if span > 0 else None,
            "p50": _percentile(latencies, 50),
            "p95": _percentile(latencies, 95),
            "p99": _percentile(latencies, 99),
        })  # fmt: skip
    return out


def _secs(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f}ms" if value < 1 else f"{value:.2f}s"


def stats(
    alvo: Annotated[str | None, typer.Option("--alvo", "-a", help="Only this escavador/executor.")] = None,
    since: Annotated[
        float | None, typer.Option("--since", help="Only jobs sent in the last N seconds.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Jobs, outcomes, throughput and latency per alvo from this directory's store."""
    from orquestrador.collector import read_health
    from orquestrador.settings import home
    from orquestrador.store import Store

    path = home() / "orquestrador.db"
    if not path.exists():
        raise OrquestradorError(
            f"no store at {path}: run jobs from this directory first, or set ORQ_HOME to where they ran"
        )
    desde = time.time() - since if since is not None else None
    rows = job_stats(Store(path).jobs(alvo=alvo, desde=desde))
    saude = read_health(home())  # a live orchestrator that cannot write this store says so here
    if saude is not None:
        cli_console.err().print(f"warning: {saude}", markup=False, highlight=False)
    if as_json:
        _print_json(rows)
        return
    table = cli_console.table(title=f"jobs in {path}")
    for column in ("alvo", "jobs", "ok", "erro", "dead-lettered", "pending", "jobs/s", "p50", "p95", "p99"):
        table.add_column(column, justify="left" if column == "alvo" else "right")
    for r in rows:
        rate = "-" if r["throughput"] is None else f"{r['throughput']:.2f}"
        table.add_row(r["alvo"], str(r["jobs"]), str(r["ok"]), str(r["erro"]), str(r["dead_lettered"]),
                      str(r["pending"]), rate, _secs(r["p50"]), _secs(r["p95"]), _secs(r["p99"]))  # fmt: skip
    cli_console.wide().print(table, markup=False)
    if not rows:
        cli_console.err().print("no jobs recorded")


def register(app: typer.Typer) -> None:
    """Mount the operations commands on ``orq`` (called once by :mod:`orquestrador.cli`)."""
    app.add_typer(queues_app, name="queues")
    app.add_typer(dlq_app, name="dlq")
    app.command("consume")(consume)
    app.command("stats")(stats)


__all__ = ["UnknownQueue", "job_stats", "register", "replay_by_id"]
