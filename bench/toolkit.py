"""The orchestrator side of the toolkit scenarios, one process per scenario.

``python -m bench.toolkit MODE --url URL --alvo NAME --results QUEUE --home DIR [...]``

- ``roundtrip``: ``AsyncOrquestrador.iniciar_lote`` of N jobs; timed from the first publish to
  the moment the last result is recorded in the store (the orchestrator's ``listeners`` hook
  fires after the store committed a batch of results).
- ``publish``: the same batch launch with no worker: publish-only throughput.
- ``latency``: ``iniciar()`` at a fixed rate; per job, from its scheduled send time to its
  result recorded (scheduled, not actual, time: a lagging producer counts against latency).
- ``memory``: the notebook path, ``Orquestrador.iniciar_coletas(...)`` + ``Lote.wait()`` over N
  jobs; RSS of this process before, during (sampled) and after.
- ``memory-store``: the same RSS measure when there is no time for the broker run: results
  fed through the orchestrator's record path without a network (see :func:`memory_store`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import Deadline, cpu_seconds, emit, handle, job_payload, latency_summary, proc_memory
from orquestrador.brokers.base import Delivery
from orquestrador.orchestrator import AsyncOrquestrador


async def _started(args: argparse.Namespace) -> AsyncOrquestrador:
    orq = AsyncOrquestrador(args.url, responder_para=args.results, home=Path(args.home))
    await orq.start()
    return orq


async def roundtrip(args: argparse.Namespace) -> dict[str, Any]:
    orq = await _started(args)
    n = args.n
    finished = 0
    last = 0.0
    all_done = asyncio.Event()

    def on_finished(ids: list[str]) -> None:
        nonlocal finished, last
        finished += len(ids)
        last = time.perf_counter()
        if finished >= n:
            all_done.set()

    orq.listeners.append(on_finished)
    try:
        cpu0 = cpu_seconds() or 0.0
        t0 = time.perf_counter()
        await orq.iniciar_lote("iniciar_coleta", args.alvo, (job_payload(i) for i in range(n)))
        published = time.perf_counter()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_done.wait(), args.timeout)
        end = last if finished >= n else time.perf_counter()
        cpu = (cpu_seconds() or 0.0) - cpu0
        states = orq.store.count_by_state()
    finally:
        await orq.close()
    seconds = end - t0
    return {
        "n": n,
        "finished": finished,
        "complete": finished >= n,
        "seconds": seconds,
        "rate": finished / seconds if seconds > 0 else None,
        "publish_seconds": published - t0,
        "cpu_seconds": cpu,
        "states": states,
        "memory": proc_memory(),
    }


async def publish(args: argparse.Namespace) -> dict[str, Any]:
    orq = await _started(args)
    try:
        t0 = time.perf_counter()
        sent = await orq.iniciar_lote("iniciar_coleta", args.alvo, (job_payload(i) for i in range(args.n)))
        seconds = time.perf_counter() - t0
        recorded = orq.store.count_by_state()
    finally:
        await orq.close()
    return {"n": len(sent), "seconds": seconds, "rate": len(sent) / seconds, "states": recorded}


async def latency(args: argparse.Namespace) -> dict[str, Any]:
    orq = await _started(args)
    done: dict[str, float] = {}
    orq.listeners.append(lambda ids: done.update(dict.fromkeys(ids, time.perf_counter())))
    sched: dict[str, float] = {}
    try:
        # Start from an empty queue (a failed earlier scenario may have left a backlog), then
        # warm up: connections, declares, the worker's first fetch.
        await orq._broker().purge(f"escavador_{args.alvo}")
        for i in range(args.warmup):
            env = await orq.iniciar("iniciar_coleta", args.alvo, job_payload(-1 - i))
            with contextlib.suppress(TimeoutError):
                await orq.esperar(env.message_id or "", timeout=10)

        async def one(at: float, seq: int) -> None:
            env = await orq.iniciar("iniciar_coleta", args.alvo, job_payload(seq))
            sched[env.message_id or ""] = at

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
    finally:
        await orq.close()
    return {"rate": args.rate, "seconds": args.seconds, **latency_summary(sched, done, count)}


def memory(args: argparse.Namespace) -> dict[str, Any]:
    from orquestrador.facade import Orquestrador

    payloads = [job_payload(i) for i in range(args.n)]  # the user's data, before the baseline
    orq = Orquestrador(args.url, responder_para=args.results, home=args.home)
    base = proc_memory()
    peak = base.get("VmRSS", 0.0)
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.wait(0.1):
            peak = max(peak, proc_memory().get("VmRSS", 0.0))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    try:
        lote = orq.iniciar_coletas(args.alvo, payloads, progress=False)
        launched = time.perf_counter() - t0
        complete = True
        try:
            lote.wait(args.timeout)
        except Exception:  # JobTimeout: report what finished
            complete = False
        seconds = time.perf_counter() - t0
        counts = lote.contagem()
    finally:
        stop.set()
        sampler.join()
        end = proc_memory()
        orq.close()
    return {
        "n": args.n,
        "complete": complete,
        "seconds": seconds,
        "launch_seconds": launched,
        "states": counts,
        "rss_base_mib": base.get("VmRSS"),
        "rss_end_mib": end.get("VmRSS"),
        "rss_peak_mib": max(peak, end.get("VmRSS", 0.0)),
        "growth_mib": end.get("VmRSS", 0.0) - base.get("VmRSS", 0.0),
        "peak_growth_mib": max(peak, end.get("VmRSS", 0.0)) - base.get("VmRSS", 0.0),
    }


class _Settled(Delivery):
    """A result handed to the orchestrator's record path directly (nothing to settle)."""

    def __init__(self, body: bytes, queue: str) -> None:
        self.body, self.headers, self.queue, self.attempt, self.message_id = body, {}, queue, 1, None

    async def ack(self) -> None:
        return None

    async def nack(self, delay: float = 0.0) -> None:
        return None

    async def heartbeat(self) -> None:
        return None

    async def dead_letter(self, reason: str, *, error_type: str = "Error") -> None:
        return None


async def memory_store(args: argparse.Namespace) -> dict[str, Any]:
    """RSS over N jobs without the network: launch through ``iniciar_lote`` (store + in-process
    broker, purged after every chunk), then feed each job's result envelope, encoded as a worker
    encodes it, through the orchestrator's own record path (``_record``: decode, store, ack, wake)
    in batches of 256, as its collector does."""
    from orquestrador import envelope as wire
    from orquestrador.envelope import Envelope

    orq = AsyncOrquestrador(f"memory://bench-{time.time_ns()}", responder_para=args.results,
                            home=Path(args.home))  # fmt: skip
    await orq.start()
    base = proc_memory()
    peak = base.get("VmRSS", 0.0)
    finished = 0

    def count(ids: list[str]) -> None:
        nonlocal finished
        finished += len(ids)

    orq.listeners.append(count)
    t0 = time.perf_counter()
    chunk = 5_000
    try:
        for first in range(0, args.n, chunk):
            seqs = range(first, min(args.n, first + chunk))
            envs = await orq.iniciar_lote("iniciar_coleta", args.alvo, (job_payload(i) for i in seqs))
            await orq._broker().purge(f"escavador_{args.alvo}")
            bodies = [
                wire.encode(Envelope(
                    correlation_id=env.correlation_id, tipo_evento="resultado_coleta",
                    payload=handle(env.payload), timestamp=wire.now(), message_id=wire.new_id(),
                    causation_id=env.message_id, alvo=args.alvo, tentativa=1, status="ok",
                    worker="bench:0:simulated",
                ))
                for env in envs
            ]  # fmt: skip
            del envs
            for i in range(0, len(bodies), 256):
                await orq._record([_Settled(b, args.results) for b in bodies[i : i + 256]])
            peak = max(peak, proc_memory().get("VmRSS", 0.0))
    finally:
        end = proc_memory()
        await orq.close()
    return {
        "n": args.n,
        "complete": finished >= args.n,
        "seconds": time.perf_counter() - t0,
        "states": {"ok": finished},
        "rss_base_mib": base.get("VmRSS"),
        "rss_end_mib": end.get("VmRSS"),
        "rss_peak_mib": max(peak, end.get("VmRSS", 0.0)),
        "growth_mib": end.get("VmRSS", 0.0) - base.get("VmRSS", 0.0),
        "peak_growth_mib": max(peak, end.get("VmRSS", 0.0)) - base.get("VmRSS", 0.0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.toolkit")
    parser.add_argument("mode", choices=["roundtrip", "publish", "latency", "memory", "memory-store"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--alvo", required=True)
    parser.add_argument("--results", required=True)
    parser.add_argument("--home", required=True)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    if args.mode == "memory":
        emit(memory(args))
        return
    scenario = {"roundtrip": roundtrip, "publish": publish, "latency": latency,
                "memory-store": memory_store}[args.mode]  # fmt: skip
    emit(asyncio.run(scenario(args)))


if __name__ == "__main__":
    main()
