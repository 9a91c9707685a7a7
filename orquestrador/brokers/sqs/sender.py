"""Publishes that happen together leave together: SendMessageBatch instead of one call each.

Every send to a queue made in one turn of the event loop (a worker's group commit of results,
``publish_many``'s window, a launch of many jobs) is gathered and sent as SendMessageBatch calls
of at most 10 messages and :data:`MAX_BATCH_BYTES`; each caller still waits for its own message's
answer, and a message SQS refuses fails only its own caller. A lone publish waits for no one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from orquestrador.brokers.sqs.errors import mapped
from orquestrador.errors import BrokerError

MAX_BATCH = 10
MAX_BATCH_BYTES = 256 * 1024  # SQS's limit on a whole batch (and on a message, outside the newest regions)

SendBatch = Callable[[str, list[dict[str, Any]]], Awaitable[dict[str, Any]]]


@dataclass
class _Outgoing:
    entry: dict[str, Any]
    size: int
    future: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


def entry_size(entry: dict[str, Any], body: str = "MessageBody") -> int:
    """What SQS (and SNS, whose body is ``Message``) counts of a message: its body and its
    attributes' names, types and values."""
    size = len(entry[body].encode("utf-8"))
    for name, attribute in entry.get("MessageAttributes", {}).items():
        size += len(name) + len(attribute["DataType"]) + len(attribute["StringValue"].encode("utf-8"))
    return size


class Sender:
    """Gathers the sends of one loop turn per queue URL (see the module docstring)."""

    def __init__(self, send_batch: SendBatch) -> None:
        self._send_batch = send_batch
        self._pending: dict[str, list[_Outgoing]] = {}
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def send(self, queue_url: str, entry: dict[str, Any]) -> None:
        """Return once SQS holds the message (raise BrokerError if it refused it)."""
        outgoing = _Outgoing(entry, entry_size(entry))
        outgoing.future.add_done_callback(_observed)
        self._pending.setdefault(queue_url, []).append(outgoing)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        await asyncio.shield(outgoing.future)

    def _flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, {}
        for url, items in pending.items():
            for chunk in _chunks(items):
                task = asyncio.ensure_future(self._send_chunk(url, chunk))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _send_chunk(self, url: str, chunk: list[_Outgoing]) -> None:
        entries = [dict(item.entry, Id=str(i)) for i, item in enumerate(chunk)]
        try:
            with mapped(f"publish of {len(chunk)} message(s) to SQS failed"):
                reply = await self._send_batch(url, entries)
        except BrokerError as exc:
            for item in chunk:
                _settle(item.future, exc)
            return
        except BaseException as exc:  # cancelled with the loop: no caller waits forever
            for item in chunk:
                _settle(item.future, BrokerError(f"publish to SQS interrupted ({type(exc).__name__})"))
            raise
        for failed in reply.get("Failed", []):
            reason = f"{failed.get('Code', '?')}: {failed.get('Message', '')}".strip(": ")
            _settle(chunk[int(failed["Id"])].future, BrokerError(f"SQS refused a message: {reason}"))
        for item in chunk:
            _settle(item.future, None)  # the rest succeeded


def _chunks(items: list[_Outgoing]) -> list[list[_Outgoing]]:
    chunks: list[list[_Outgoing]] = []
    current: list[_Outgoing] = []
    size = 0
    for item in items:
        if current and (len(current) >= MAX_BATCH or size + item.size > MAX_BATCH_BYTES):
            chunks.append(current)
            current, size = [], 0
        current.append(item)
        size += item.size
    if current:
        chunks.append(current)
    return chunks


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


def _observed(future: asyncio.Future[None]) -> None:
    """A caller that went away (cancelled) leaves no 'exception never retrieved' behind."""
    if not future.cancelled():
        future.exception()
