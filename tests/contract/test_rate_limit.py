"""Per-domain rate limits: polite scrapers, shared by every worker where the broker allows."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid

import pytest

from orquestrador import AsyncOrquestrador, Worker, WorkerOptions
from orquestrador.brokers import Broker, connect
from orquestrador.brokers.kafka import KafkaBroker
from orquestrador.brokers.kafka.names import group_of
from orquestrador.brokers.support.lanes import lanes_of
from orquestrador.plugins import Plugin, domain_of
from tests.conftest import broker_url_for, brokers_where


def carimbo(payload: dict) -> dict:
    return {"t": time.time()}


async def settled(broker: Broker, fila: str, members: int) -> None:
    """Until the Kafka groups of a queue and its priority lanes hold every worker and are stable:
    a member joining moves partitions, and the group pauses for up to a heartbeat (3 s)
    meanwhile, which would be timed here as a throttle. Other brokers have no groups to settle."""
    if not isinstance(broker, KafkaBroker):
        return
    groups = [group_of(queue) for queue in (fila, *lanes_of(fila))]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        described = [(await broker.admin.describe_consumer_groups([g]))[0].groups[0] for g in groups]
        if all(g[2] == "Stable" and len(g[5]) == members for g in described):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the group of {fila} did not settle with {members} members in 30 s")


async def test_one_domain_is_throttled_and_another_is_not(broker: Broker, broker_url: str):
    nome = f"polido_{uuid.uuid4().hex[:8]}"
    plugin = Plugin("escavador", nome, carimbo, "tests", rate_limit=5.0, rate_key=domain_of)
    # Two workers on two connections, as two processes would be.
    second = await connect(broker_url)
    workers = [Worker(b, [plugin], WorkerOptions(concurrency=4)) for b in (broker, second)]
    tasks = [asyncio.create_task(w.run()) for w in workers]
    orq = AsyncOrquestrador(broker_url, responder_para=f"res_{nome}")
    await orq.start()
    try:
        await settled(broker, plugin.fila, members=2)
        lento = [
            await orq.iniciar("iniciar_coleta", nome, {"url": f"http://a-{nome}.test/{i}"}) for i in range(8)
        ]
        rapido = [
            await orq.iniciar("iniciar_coleta", nome, {"url": f"http://b{i}-{nome}.test/"}) for i in range(4)
        ]
        rows = [await orq.esperar(e.message_id, 30) for e in lento + rapido]
    finally:
        for w in workers:
            w.stop()
        await asyncio.gather(*tasks)
        await orq.close()
        await second.close()
        await broker.delete(plugin.fila)
        await broker.delete(f"res_{nome}")

    times = sorted(r.resultado["t"] for r in rows[:8])
    # Slots are reserved 0.2 s apart on the broker's clock; a loaded machine can start the first
    # job late and so shorten the measured spread by up to one interval, never more. Unthrottled,
    # the eight would start within milliseconds of each other.
    assert times[-1] - times[0] >= 6 * 0.2 * 0.95, "8 jobs at 5/s on one domain take >= 1.4 s"
    others = sorted(r.resultado["t"] for r in rows[8:])
    assert others[-1] - others[0] < 1.0, "different domains are not held back by each other"


@pytest.mark.parametrize("name", brokers_where(lambda caps: caps.shared_slots))
def test_slots_are_shared_across_processes(name: str, request: pytest.FixtureRequest):
    url = broker_url_for(name, request)
    key = f"test:{uuid.uuid4().hex}"
    code = (
        "import asyncio, sys\n"
        "from orquestrador.brokers import connect\n"
        "async def main():\n"
        f"    b = await connect({url!r})\n"
        f"    print(await b.slots().reserve({key!r}, 10.0))\n"
        "    await b.close()\n"
        "asyncio.run(main())\n"
    )
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    second = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert float(first.stdout) < 0.5
    assert 8.0 < float(second.stdout) <= 10.0, "the second process waits for the slot the first took"
