"""Launching a batch of jobs: chunks pipelined to the broker, each recorded in the store first.

While one chunk's publish waits for its confirmations, the next chunk is built and written to
the store, so SQLite's write overlaps the broker's round trip instead of stalling the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable

from orquestrador import tracing
from orquestrador.brokers import Broker
from orquestrador.envelope import Envelope
from orquestrador.errors import LaunchError
from orquestrador.store import Store

log = logging.getLogger("orquestrador")

Job = tuple[Envelope, bytes, tracing.Span]  # the envelope, its encoding, its publish span


async def launch(
    store: Store,
    broker: Broker,
    fila: str,
    jobs: Iterable[Job],
    *,
    what: str,
    chunk: int = 500,
    lote: str | None = None,
    on_progress: Callable[[int], None] | None = None,
    on_sent: Callable[[list[Envelope]], None] | None = None,
    target: str | None = None,
) -> int:
    """Publish ``jobs`` to ``fila`` in chunks; returns how many were published.

    ``target``: the queue they are published to when not ``fila`` itself (a priority lane,
    :mod:`orquestrador.brokers.support.lanes`); the store records them under ``fila``.

    ``jobs`` is read lazily, so memory stays flat however many. One that stops part-way (a bad
    payload, the broker refusing a chunk) raises :class:`LaunchError` with ``lote`` and
    ``enviados``: every job sent is recorded; the rows of a chunk whose publish failed stay too,
    since some of it may have reached the broker. ``what`` names the launch in that error.
    """
    total = 0
    sending: asyncio.Task[int] | None = None  # the previous chunk's publish, still confirming

    async def send(batch: list[Job]) -> None:
        # Each chunk is recorded before it is sent, in a thread: SQLite's write of this chunk
        # overlaps the confirmations of the previous one instead of stalling the loop.
        nonlocal sending, total
        envelopes = [env for env, _, _ in batch]
        bodies = [body for _, body, _ in batch]
        await asyncio.to_thread(store.record_sent, envelopes, fila, lote=lote, bodies=bodies)
        if sending is not None:
            previous, sending = sending, None
            try:
                total += await previous
            except BaseException:
                store.forget([e.message_id or "" for e in envelopes])  # never sent
                raise
        sending = asyncio.create_task(_publish_chunk(broker, target or fila, batch, on_progress, on_sent))

    batch: list[Job] = []
    try:
        for job in jobs:
            batch.append(job)
            if len(batch) >= chunk:
                await send(batch)
                batch = []
        if batch:
            await send(batch)
        if sending is not None:
            previous, sending = sending, None
            total += await previous
    except Exception as exc:
        # A bad payload further on: what was recorded and handed to the broker still goes out.
        if sending is not None:
            with contextlib.suppress(Exception):
                total += await sending
        where = f"; they are batch {lote!r}, orq.lote({lote!r}) finds it" if lote else ""
        raise LaunchError(
            f"launching {what} stopped after {total} jobs were sent ({type(exc).__name__}: {exc}){where}",
            lote=lote,
            enviados=total,
        ) from exc
    except BaseException:
        if sending is not None:
            sending.cancel()
        raise
    return total


async def _publish_chunk(
    broker: Broker,
    fila: str,
    batch: list[Job],
    on_progress: Callable[[int], None] | None,
    on_sent: Callable[[list[Envelope]], None] | None,
) -> int:
    try:
        await broker.publish_many(fila, ((body, env.message_id) for env, body, _ in batch))
    except BaseException as exc:
        # Some of the chunk may be out; the broker's dedup makes a re-launch of them safe.
        log.error("batch publish to %s failed; %d jobs of this chunk unconfirmed", fila, len(batch))
        for _, _, span in batch:
            span.fail(exc)
            span.end()
        raise
    for _, _, span in batch:
        span.end()
    if on_progress is not None:
        on_progress(len(batch))
    if on_sent is not None:
        on_sent([env for env, _, _ in batch])
    return len(batch)
