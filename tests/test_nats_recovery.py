"""A NATS publish with a message_id rides out a server outage instead of failing the job's result.

The server is a throwaway nats-server on a free loopback port (tests/servers.py) with JetStream
file storage, so the stream survives the restart; the shared servers are never touched.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from orquestrador.brokers.nats import NatsBroker
from tests.servers import NatsServer

pytestmark = pytest.mark.nats

REQUEST_TIMEOUT = 2.0  # short, so the outage below outlasts it


async def test_a_publish_with_a_message_id_is_sent_again_once_the_server_is_back(tmp_path: Path):
    with NatsServer(tmp_path / "nats") as server:
        broker = NatsBroker(server.url, request_timeout=REQUEST_TIMEOUT)
        await broker.connect()
        queue = f"t_{uuid.uuid4().hex[:12]}"
        try:
            await broker.declare(queue)
            await asyncio.to_thread(server.stop)
            # A worker publishing a job's result while the server is down.
            publishing = asyncio.create_task(broker.publish(queue, b"resultado", message_id="m-1"))
            await asyncio.sleep(REQUEST_TIMEOUT * 2.5)
            assert not publishing.done(), "a durable publish gave up while the server was down"
            await asyncio.to_thread(server.start)

            await asyncio.wait_for(publishing, timeout=60)

            # Every re-sent copy carried the same Nats-Msg-Id: the stream holds it once.
            assert [m.body for m in await broker.peek(queue)] == [b"resultado"]
            assert (await broker.stats(queue)).depth == 1
        finally:
            await broker.delete(queue)
            await broker.close()
