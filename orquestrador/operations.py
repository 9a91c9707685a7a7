"""Operations on a broker's queues, shared by ``orq`` and the facade (and so the dashboard).

Why one module: the queue overview, reading dead letters and replaying them (all, N, or one by
``message_id``) were written once for the CLI and again for the widgets, and drifted. Each is
an ``async`` function over a connected :class:`~orquestrador.brokers.base.Broker`: the CLI runs
it in a loop of its own, the facade on its loop thread.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable

from orquestrador.brokers.base import (
    Broker,
    Delivery,
    Message,
    QueueStats,
    dlq_of,
    origin_of,
    strip_dead_letter_headers,
    validate_queue_name,
)
from orquestrador.brokers.support.lanes import replay_target
from orquestrador.errors import ConfigError, OrquestradorError

BY_ID_SEARCH = 1000  # dead letters a search by message_id looks at, at most


class UnknownQueue(ConfigError):
    """The queue named is not one the toolkit declared on this broker."""


async def known_queue(broker: Broker, name: str) -> str:
    """``name`` if the toolkit declared it, else an error that lists the queues that exist."""
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


async def queue_overview(broker: Broker, names: Iterable[str] | None = None) -> list[QueueStats]:
    """Each queue of the toolkit (its ``.dlq`` counted in it), sorted by name.

    With ``names``, only those; one not declared on the broker yet is left out.
    """
    if names is None:
        return [await broker.stats(q) for q in sorted({origin_of(n) for n in await broker.queues()})]
    out = []
    for name in sorted(set(names)):
        try:
            out.append(await broker.stats(name))
        except Exception:  # not declared yet on this broker (each adapter says so its own way)
            continue
    return out


async def dead_letters(
    broker: Broker, queue: str | None = None, limit: int = 100
) -> list[tuple[str, Message]]:
    """The oldest dead letters, up to ``limit`` per queue, each with the queue it died on.

    ``queue`` (or its ``.dlq``) picks one queue; without it, every queue that has dead letters.
    """
    names = await broker.queues()
    if queue is not None:
        target = dlq_of(queue)
        if target not in names and origin_of(queue) not in names:
            await known_queue(broker, queue)
        dlqs = [target]
    else:
        dlqs = sorted({dlq_of(n) for n in names})
    out: list[tuple[str, Message]] = []
    for d in dlqs:
        if queue is None and not (await broker.stats(origin_of(d))).dead_letters:
            continue
        out.extend((origin_of(d), m) for m in await broker.peek(d, limit))
    return out


async def replay(
    broker: Broker,
    queue: str,
    *,
    limit: int | None = None,
    message_id: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Move ``queue``'s dead letters back onto it: all, at most ``limit``, or the one whose envelope
    has ``message_id``; returns how many moved.

    Only those there when it starts, each once: a worker failing them again meanwhile makes it
    neither loop nor count them twice. ``progress`` is told how many moved so far.
    """
    origin = origin_of(queue)
    names = await broker.queues()
    if origin not in names and dlq_of(origin) not in names:
        await known_queue(broker, queue)
    if message_id is None:
        return await broker.replay(origin, limit=limit, progress=progress)
    moved = await replay_by_id(broker, origin, message_id)
    if not moved:
        total = (await broker.stats(origin)).dead_letters
        raise OrquestradorError(
            f"no dead letter with message_id {message_id!r} among the {total} in "
            f"{dlq_of(origin)} (see `orq dlq list {origin}`; a search looks at up to {BY_ID_SEARCH})"
        )
    return moved


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
    consumer = await broker.consume(
        source, visibility_timeout=120.0, prefetch=max(16, min(total, BY_ID_SEARCH))
    )
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
                    to = await replay_target(broker, target, delivery.headers)  # a lane's, to its lane
                    await broker.publish(to, delivery.body, headers=headers)
                    await delivery.ack()
                    found = 1
                else:
                    held.append(delivery)
    finally:
        for delivery in held:
            await delivery.nack()
        await consumer.close()
    return found


__all__ = ["UnknownQueue", "dead_letters", "known_queue", "queue_overview", "replay", "replay_by_id"]
