"""Consuming BullMQ jobs through the ``bullmq`` package's scripts, and their deliveries.

A fetch is BullMQ's ``moveToActive`` (the job's lock is the lease, its ``ats`` the delivery
count), waiting on the queue's marker as BullMQ's own workers do; settling is
``moveToCompleted`` (with the job's result as ``returnvalue``), ``retryJob`` /
``moveToDelayed`` and ``moveToFailed``; a heartbeat is ``extendLock``. Jobs whose lock lapsed
(a killed worker's) go back to waiting through ``moveStalledJobsToWait``, which every consumer
runs once per visibility timeout, as BullMQ workers do once per ``stalledInterval``.

Dead letters are the queue's failed jobs: a consumer of ``<queue>.dlq`` reads them oldest first,
its ack removes one, and a nack leaves it where it is.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
import uuid
from typing import Any, Protocol

from bullmq import Job, Queue

from orquestrador.brokers.base import Consumer, Delivery
from orquestrador.brokers.bullmq.errors import LeaseLost, mapped
from orquestrador.brokers.bullmq.jobs import (
    DEAD_LETTER_FIELD,
    body_of,
    dead_letter_headers_of,
    job_headers,
)
from orquestrador.brokers.intake import FieldReader

log = logging.getLogger(__name__)

# BullMQ fails a job that stalled more often than this; the worker runtime's own count of
# deliveries (``WorkerLost`` past ``max_tentativas``) decides that here instead.
MAX_STALLED = 1_000_000


class Host(Protocol):
    """What consumers and deliveries need of their broker, so this module never imports it."""

    keep_completed: dict[str, int]
    keep_failed: dict[str, int] | bool

    def bull_queue(self, name: str) -> Queue: ...

    def finished_on(self, stamp_ms: int) -> int: ...


def read_job(queue: Queue, raw: dict[str, Any], job_id: str) -> tuple[Job, FieldReader]:
    """BullMQ's Job for a raw job hash; what cannot be read is noted on the reader, not raised."""
    reader = FieldReader()
    reader.text(job_id, "job id")
    try:
        job = Job.fromJSON(queue, raw, job_id)
    except Exception as exc:  # anyone may write a job hash: its fields are untrusted
        reader.problems.append(f"unreadable BullMQ job fields ({type(exc).__name__}: {str(exc)[:200]})")
        job = Job(queue, "orq", None, {}, job_id)
    return job, reader


def _position(raw: dict[str, Any]) -> tuple[int, ...] | None:
    stamp = raw.get("timestamp")
    return (int(stamp),) if isinstance(stamp, str) and stamp.isdigit() and len(stamp) < 20 else None


class BullMQDelivery(Delivery):
    def __init__(self, consumer: BullMQConsumer, raw: dict[str, Any], job_id: str, token: str) -> None:
        self._consumer = consumer
        self._queue = consumer.bull
        self._token = token
        self.queue = consumer.queue
        self.job, reader = read_job(self._queue, raw, job_id)
        self.body = body_of(raw.get("data"))
        self.headers = job_headers(raw, reader)
        self.attempt = max(1, reader.count(raw.get("ats"), "attempts-started field 'ats'"))
        self.message_id = job_id
        self.position = _position(raw)
        self.problem = reader.problem

    def _what(self, verb: str) -> str:
        return f"{verb} of job {self.job.id} on {self.queue} failed"

    async def ack(self) -> None:
        """Completed, with the result this job was answered with as BullMQ's ``returnvalue``."""
        value = json.loads(self.reply) if self.reply else None
        host = self._consumer.host
        try:
            with mapped(self._what("ack")):
                await self._queue.backend.moveToCompleted(
                    self.job, value, host.keep_completed, self._token, fetch_next=False
                )
        except LeaseLost as exc:  # redelivered elsewhere meanwhile: that delivery settles it
            log.debug("%s", exc)

    async def nack(self, delay: float = 0.0) -> None:
        """Back to waiting (``retryJob``) or to BullMQ's delayed set; either counts an attempt made."""
        backend = self._queue.backend
        try:
            with mapped(self._what("nack")):
                if delay <= 0:
                    await backend.retryJob(self.job.id, False, self._token, {})
                else:
                    now = round(time.time() * 1000)
                    await backend.moveToDelayed(
                        self.job.id, now, max(1, round(delay * 1000)), self._token, {}
                    )
        except LeaseLost as exc:
            log.debug("%s", exc)

    async def heartbeat(self) -> None:
        with mapped(self._what("heartbeat")):
            renewed = await self._queue.backend.extendLock(self.job.id, self._token, self._consumer.lock_ms)
        if not renewed:
            log.debug("heartbeat ignored: job %s of %s was redelivered elsewhere", self.job.id, self.queue)

    async def dead_letter(self, reason: str, *, error_type: str = "Error") -> None:
        """A failed job in BullMQ, ``reason`` as its ``failedReason`` (Node and Bull Board show it)."""
        fields = {DEAD_LETTER_FIELD: json.dumps(self.dead_letter_headers(reason, error_type))}
        host, scripts = self._consumer.host, self._queue.backend.scripts
        keys, args = scripts.moveToFailedArgs(self.job, reason, host.keep_failed, self._token, False, fields)
        # The failed set is ordered by finishedOn (ms): kept strictly increasing here, so dead
        # letters of one process list, and are trimmed, in the order they died.
        args[1] = host.finished_on(int(args[1]))
        with mapped(self._what("dead_letter")):
            await scripts.moveToFinished(self.job.id, keys, args)


class BullMQConsumer(Consumer):
    def __init__(self, host: Host, queue: str, visibility: float) -> None:
        self.host = host
        self.queue = queue
        self.bull = host.bull_queue(queue)
        self.lock_ms = max(1, int(visibility * 1000))
        self._id = uuid.uuid4().hex
        self._tokens = itertools.count(1)
        self._slice = max(0.05, min(1.0, visibility / 2))  # how often a long wait re-checks
        self._next_stalled_check = 0.0
        self._closed = False

    async def fetch(self, max_messages: int, timeout: float) -> list[Delivery]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, timeout)
        while not self._closed:
            with mapped(f"fetch from {self.queue} failed"):
                await self._check_stalled(loop.time())
                batch, due_ms = await self._take(max(1, max_messages))
                now = loop.time()
                if batch or now >= deadline:
                    return batch
                block = min(deadline - now, self._slice, max(0.0, self._next_stalled_check - now))
                if due_ms > 0:  # the next delayed job is due then
                    block = min(block, max(0.0, due_ms / 1000 - time.time()))
                if block >= 0.01:
                    await self.bull.backend.waitForJob(block)  # BZPOPMIN on the queue's marker
        return []

    async def _take(self, count: int) -> tuple[list[Delivery], int]:
        """Up to ``count`` jobs moved to active, each with a token of its own as its lock: one
        ``moveToActive`` first, then (if it found a job) the rest at once, over the pool."""
        first, due_ms = await self._move_to_active()
        if first is None:
            return [], due_ms
        more = await asyncio.gather(*(self._move_to_active() for _ in range(min(count - 1, 63))))
        return [first, *(d for d, _ in more if d is not None)], due_ms

    async def _move_to_active(self) -> tuple[Delivery | None, int]:
        """A job made active (or None, and when the next delayed one is due)."""
        token = f"{self._id}:{next(self._tokens)}"
        raw, job_id, _limit_until, delay_until = await self.bull.backend.moveToActive(
            token, {"lockDuration": self.lock_ms}
        )
        if not raw or not job_id:
            return None, int(delay_until or 0)
        return BullMQDelivery(self, raw, str(job_id), token), 0

    async def _check_stalled(self, now: float) -> None:
        """Jobs whose lock lapsed go back to waiting (BullMQ's stalled-jobs check)."""
        if now < self._next_stalled_check:
            return
        self._next_stalled_check = now + self.lock_ms / 1000
        stalled = await self.bull.backend.moveStalledJobsToWait(MAX_STALLED, self.lock_ms)
        if stalled:
            log.info("%d stalled job(s) of %s back to waiting", len(stalled), self.queue)

    async def close(self) -> None:
        """Stop fetching; unsettled jobs return when their lock lapses."""
        self._closed = True


class DeadLetter(Delivery):
    """A failed job seen as a dead letter: ack removes it, nack leaves it failed."""

    def __init__(self, queue_name: str, bull: Queue, raw: dict[str, Any], job_id: str) -> None:
        self._bull = bull
        self.queue = queue_name
        self.job, reader = read_job(bull, raw, job_id)
        self.body = body_of(raw.get("data"))
        self.headers = job_headers(raw, reader) | dead_letter_headers_of(raw, reader)
        self.attempt = max(1, reader.count(raw.get("atm"), "attempts-made field 'atm'"))
        self.message_id = job_id
        self.position = _position(raw)
        self.problem = reader.problem

    async def ack(self) -> None:
        with mapped(f"cannot remove dead letter {self.job.id} of {self.queue}"):
            await self._bull.backend.remove(self.job.id, False)

    async def nack(self, delay: float = 0.0) -> None:
        return None  # it stays in the failed set

    async def heartbeat(self) -> None:
        return None  # failed jobs hold no lock

    async def dead_letter(self, reason: str, *, error_type: str = "Error") -> None:
        return None  # dead already


class DeadLetterConsumer(Consumer):
    """Reads ``<queue>``'s failed jobs, oldest first, each once per consumer."""

    def __init__(self, queue_name: str, bull: Queue) -> None:
        self.queue = queue_name
        self._bull = bull
        self._seen: set[str] = set()

    async def fetch(self, max_messages: int, timeout: float) -> list[Delivery]:
        backend = self._bull.backend
        with mapped(f"cannot read the dead letters of {self.queue}"):
            ids = await backend.getRanges(["failed"], 0, len(self._seen) + max(1, max_messages) - 1, True)
            fresh = [str(i) for i in ids if str(i) not in self._seen][: max(1, max_messages)]
            raws = await asyncio.gather(*(backend.getJobData(i) for i in fresh))
        out: list[Delivery] = []
        for job_id, raw in zip(fresh, raws, strict=True):
            self._seen.add(job_id)
            if raw:
                out.append(DeadLetter(self.queue, self._bull, raw, job_id))
        if not out and timeout > 0:
            await asyncio.sleep(min(timeout, 0.2))
        return out

    async def close(self) -> None:
        return None
