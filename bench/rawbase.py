"""The scenarios of the raw baselines, written once over a small client interface.

Each ``bench/raw_<broker>.py`` implements :class:`RawClient` with nothing but the broker's own
client and calls :func:`main`. The guarantees are the toolkit's: a publish counts once the broker
confirmed it (JetStream PubAck / XADD reply / publisher confirm), the worker acks a job only
after its result was confirmed, the producer acks a result after it has read it. Batching is
allowed (the worker fetches up to ``--batch`` jobs, publishes their results pipelined, then acks
them) — this is what a careful hand-written consumer does, so it is the bar to measure against.

Commands: ``worker`` (serve jobs until SIGTERM or ``--max-seconds``), ``producer`` with
``--mode roundtrip|publish|latency``, and ``cleanup`` (delete the queues given).
"""

from __future__ import annotations

import abc
import argparse
import asyncio
import contextlib
import itertools
import os
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any

from bench.common import (
    Deadline,
    causation_of,
    cpu_seconds,
    emit,
    latency_summary,
    proc_memory,
    raw_request,
    ready,
    stop_on_signal,
)

OnBody = Callable[[bytes], None]


class RawClient(abc.ABC):
    """What a scenario needs from a broker client; every method keeps the durable contract."""

    worker_id = f"{socket.gethostname()}:{os.getpid()}:raw"

    @abc.abstractmethod
    async def connect(self, url: str) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def declare(self, queue: str) -> None: ...

    @abc.abstractmethod
    async def publish(self, queue: str, body: bytes) -> None:
        """One message, returning once the broker confirmed it."""

    @abc.abstractmethod
    async def publish_many(self, queue: str, bodies: Iterable[bytes], window: int = 256) -> None:
        """Many messages, pipelined (up to ``window`` unconfirmed), all confirmed on return."""

    @abc.abstractmethod
    async def collect(self, queue: str, on_body: OnBody, stop: asyncio.Event, batch: int) -> None:
        """Consume results until ``stop``: ``on_body`` each one, then ack it."""

    @abc.abstractmethod
    async def serve(self, queue: str, stop: asyncio.Event, batch: int) -> None:
        """The worker: for each job publish a result (confirmed), then ack the job."""

    @abc.abstractmethod
    async def delete(self, queues: list[str]) -> None: ...


async def _roundtrip(client: RawClient, args: argparse.Namespace) -> dict[str, Any]:
    n = args.n
    got = 0
    last = 0.0
    all_done = asyncio.Event()
    stop = asyncio.Event()

    def on_body(body: bytes) -> None:
        nonlocal got, last
        causation_of(body)  # read it, as a real collector would
        got += 1
        last = time.perf_counter()
        if got >= n:
            all_done.set()

    collector = asyncio.create_task(client.collect(args.results, on_body, stop, 256))
    await asyncio.sleep(0.2)  # subscribed before the first result can arrive
    cpu0 = cpu_seconds() or 0.0
    t0 = time.perf_counter()
    bodies = (raw_request(i, args.alvo, args.results)[1] for i in range(n))
    await client.publish_many(args.queue, bodies)
    published = time.perf_counter()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(all_done.wait(), args.timeout)
    end = last if got >= n else time.perf_counter()
    cpu = (cpu_seconds() or 0.0) - cpu0
    stop.set()
    await asyncio.wait_for(collector, 10)
    seconds = end - t0
    return {
        "n": n,
        "finished": got,
        "complete": got >= n,
        "seconds": seconds,
        "rate": got / seconds if seconds > 0 else None,
        "publish_seconds": published - t0,
        "cpu_seconds": cpu,
        "memory": proc_memory(),
    }


async def _publish(client: RawClient, args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.perf_counter()
    await client.publish_many(args.queue, (raw_request(i, args.alvo, args.results)[1] for i in range(args.n)))
    seconds = time.perf_counter() - t0
    return {"n": args.n, "seconds": seconds, "rate": args.n / seconds}


async def _latency(client: RawClient, args: argparse.Namespace) -> dict[str, Any]:
    done: dict[str, float] = {}
    stop = asyncio.Event()

    def on_body(body: bytes) -> None:
        done[causation_of(body)] = time.perf_counter()

    collector = asyncio.create_task(client.collect(args.results, on_body, stop, 256))
    await asyncio.sleep(0.2)
    for i in range(args.warmup):
        message_id, body = raw_request(-1 - i, args.alvo, args.results)
        await client.publish(args.queue, body)
        deadline = Deadline(10)
        while message_id not in done and not deadline.passed:
            await asyncio.sleep(0.001)
    sched: dict[str, float] = {}

    async def one(at: float, seq: int) -> None:
        message_id, body = raw_request(seq, args.alvo, args.results)
        sched[message_id] = at
        await client.publish(args.queue, body)

    count = int(args.rate * args.seconds)
    tasks: list[asyncio.Task[None]] = []
    start = time.perf_counter() + 0.05
    for i in range(count):
        at = start + i / args.rate
        delay = at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(at, i)))
    await asyncio.gather(*tasks)
    deadline = Deadline(args.timeout)
    while not deadline.passed and sum(1 for k in sched if k in done) < count:
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(collector, 10)
    return {"rate": args.rate, "seconds": args.seconds, **latency_summary(sched, done, count)}


async def _worker(client: RawClient, args: argparse.Namespace) -> dict[str, Any]:
    stop = asyncio.Event()
    stop_on_signal(stop.set)
    await client.declare(args.queue)
    task = asyncio.create_task(client.serve(args.queue, stop, args.batch))
    ready()
    try:
        await asyncio.wait_for(stop.wait(), args.max_seconds)
    except TimeoutError:
        stop.set()
    await asyncio.wait_for(task, 15)
    return {"memory": proc_memory()}


async def _run(client: RawClient, args: argparse.Namespace) -> dict[str, Any]:
    await client.connect(args.url)
    try:
        if args.command == "cleanup":
            await client.delete(args.queues)
            return {"deleted": args.queues}
        if args.command == "worker":
            return await _worker(client, args)
        for queue in (args.queue, args.results):
            await client.declare(queue)
        scenario = {"roundtrip": _roundtrip, "publish": _publish, "latency": _latency}[args.mode]
        return await scenario(client, args)
    finally:
        await client.close()


def build_parser(prog: str) -> argparse.ArgumentParser:
    """The commands every baseline module takes (raw clients and peers alike)."""
    parser = argparse.ArgumentParser(prog=prog)
    sub = parser.add_subparsers(dest="command", required=True)
    worker = sub.add_parser("worker")
    producer = sub.add_parser("producer")
    cleanup = sub.add_parser("cleanup")
    for p in (worker, producer, cleanup):
        p.add_argument("--url", required=True)
    for p in (worker, producer):
        p.add_argument("--queue", required=True)
    worker.add_argument("--batch", type=int, default=32)
    worker.add_argument("--results", default="", help="a peer's results queue (raw: responder_para)")
    worker.add_argument("--max-seconds", type=float, default=600.0)
    producer.add_argument("--mode", choices=["roundtrip", "publish", "latency"], required=True)
    producer.add_argument("--results", required=True)
    producer.add_argument("--alvo", default="bench_raw")
    producer.add_argument("--n", type=int, default=20_000)
    producer.add_argument("--rate", type=float, default=500.0)
    producer.add_argument("--seconds", type=float, default=5.0)
    producer.add_argument("--warmup", type=int, default=20)
    producer.add_argument("--timeout", type=float, default=120.0)
    cleanup.add_argument("queues", nargs="+")
    return parser


def run(client: RawClient, args: argparse.Namespace) -> None:
    """Run the command ``args`` names with ``client``; its numbers on stdout for the driver."""
    emit(asyncio.run(_run(client, args)))


def main(client: RawClient, prog: str) -> None:
    run(client, build_parser(prog).parse_args())


def chunks(items: Iterable[bytes], size: int) -> Iterable[list[bytes]]:
    it = iter(items)
    while chunk := list(itertools.islice(it, max(1, size))):
        yield chunk
