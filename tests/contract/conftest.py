"""Fixtures the contract modules share."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from orquestrador import AsyncOrquestrador


@pytest.fixture
async def orq(broker_url: str) -> AsyncIterator[AsyncOrquestrador]:
    """An orchestrator on the broker under test, with a results queue of its own."""
    o = AsyncOrquestrador(broker_url, responder_para=f"res_{uuid.uuid4().hex[:10]}")
    await o.start()
    yield o
    await o.close()
