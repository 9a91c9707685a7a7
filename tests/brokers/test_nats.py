"""NATS specifics beyond the contract suite, on a throwaway nats-server of the test's own."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
import pytest
from nats.js.api import StorageType

from orquestrador.brokers import connect
from tests.servers import NatsServer

pytestmark = pytest.mark.nats


async def test_queues_lists_every_queue_of_a_crowded_server(tmp_path: Path) -> None:
    """A server answers one page of a stream listing (1,024 names; nats.py's ``streams_info`` asks
    for one page of 256): on a server shared with other applications, ``orq queues`` must page
    through all of them, and leave out the streams that are not the toolkit's."""
    queues = [f"coleta_lista_{i:04d}" for i in range(1100)]
    with NatsServer(tmp_path / "nats") as server:
        nc = await nats.connect(server.url)
        try:
            js = nc.jetstream()
            foreign = [js.add_stream(name=f"OTHER_{i}", subjects=[f"other.{i}"]) for i in range(30)]
            memory = StorageType.MEMORY
            ours = [js.add_stream(name=f"ORQ_{q}", subjects=[f"lista.{q}"], storage=memory) for q in queues]
            for chunk in range(0, len(ours) + len(foreign), 100):
                await asyncio.gather(*(ours + foreign)[chunk : chunk + 100])
        finally:
            await nc.close()

        broker = await connect(server.url)
        try:
            listed = await broker.queues()
        finally:
            await broker.close()

    assert listed == queues
