"""The broker-held state schedules live in: a listing holds every key written and none deleted."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from orquestrador.brokers import connect
from tests.conftest import BROKERS, broker_url_for

SCHEDULED = ("nats", "redis", "rabbitmq", "bullmq", "sqs", "kafka")


@pytest.fixture(params=[p for p in BROKERS if p.id in SCHEDULED])
def url(request: pytest.FixtureRequest) -> str:
    return broker_url_for(str(request.param), request)


def test_a_fresh_connection_lists_every_key_just_written(url: str) -> None:
    """What ``orq agenda list`` does from a new process, many times over: on NATS a listing
    through nats.py's ``kv.keys()`` once came back empty while schedules existed."""
    prefix = f"t{uuid.uuid4().hex[:8]}."

    async def scenario() -> list[int]:
        broker = await connect(url)
        try:
            state = broker.shared_state()
            for i in range(4):
                await state.put(f"{prefix}{i}", b"kept")
            await state.put(f"{prefix}gone", b"deleted below")
            assert await state.delete(f"{prefix}gone")
        finally:
            await broker.close()
        missing: list[int] = []
        for round_ in range(25):
            broker = await connect(url)
            try:
                state = broker.shared_state()
                await state.put(f"{prefix}0", f"round {round_}".encode())
                listed = await state.items(prefix)
                assert f"{prefix}gone" not in listed
                assert listed.get(f"{prefix}0") == f"round {round_}".encode()
                if len(listed) != 4:
                    missing.append(round_)
            finally:
                await broker.close()
        broker = await connect(url)
        try:
            for key in [f"{prefix}{i}" for i in range(4)]:
                await broker.shared_state().delete(key)
        finally:
            await broker.close()
        return missing

    assert asyncio.run(scenario()) == [], "rounds whose listing missed keys"
