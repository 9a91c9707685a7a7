"""Batch launch: chunks are recorded then published, the next chunk's write overlapping the last's
confirmations. What a user relies on: a failure leaves the store telling the truth."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from orquestrador import AsyncOrquestrador, Orquestrador
from orquestrador.errors import BrokerError, EnvelopeError, LaunchError
from tests.workers import start_worker


async def _orq(tmp_path: Path) -> AsyncOrquestrador:
    orq = AsyncOrquestrador(f"memory://{uuid.uuid4().hex}", home=tmp_path)
    await orq.start()
    return orq


async def test_every_job_of_a_big_batch_is_recorded_and_published_once_in_order(tmp_path: Path):
    orq = await _orq(tmp_path)
    sent = await orq.iniciar_lote("iniciar_coleta", "lote", ({"n": i} for i in range(1234)), chunk=100)

    assert [e.payload["n"] for e in sent] == list(range(1234))
    assert (await orq._broker().stats("escavador_lote")).depth == 1234
    assert orq.store.count_by_state() == {"queued": 1234}
    await orq.close()


async def test_a_bad_payload_midway_stops_the_batch_but_what_was_sent_stays_recorded(tmp_path: Path):
    orq = await _orq(tmp_path)
    payloads = [{"n": i} for i in range(250)] + ["not a dict"] + [{"n": 999}]

    with pytest.raises(LaunchError, match="stopped after 200 jobs were sent") as caught:
        await orq.iniciar_lote("iniciar_coleta", "lote", payloads, chunk=100)  # type: ignore[arg-type]
    assert isinstance(caught.value.__cause__, EnvelopeError)
    assert caught.value.enviados == 200

    depth = (await orq._broker().stats("escavador_lote")).depth
    assert depth == 200  # two full chunks went out; the third never formed
    assert orq.store.count_by_state() == {"queued": 200}
    await orq.close()


async def test_a_failed_publish_forgets_the_chunk_recorded_behind_it(tmp_path: Path):
    orq = await _orq(tmp_path)
    broker = orq._broker()
    real = broker.publish_many
    calls = 0

    async def flaky(queue, items, **kw):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        if calls == 2:
            raise BrokerError("connection lost")
        return await real(queue, items, **kw)

    broker.publish_many = flaky  # type: ignore[method-assign]
    with pytest.raises(LaunchError, match="connection lost") as caught:
        await orq.iniciar_lote("iniciar_coleta", "lote", [{"n": i} for i in range(500)], chunk=100)
    assert isinstance(caught.value.__cause__, BrokerError)
    assert caught.value.enviados == 100

    # Chunk 1 is out, chunk 2 failed (kept: some of it may be out, dedup makes a re-launch safe),
    # chunk 3 was recorded while chunk 2 confirmed, never sent: forgotten. Nothing after it.
    assert orq.store.count_by_state() == {"queued": 200}
    assert (await broker.stats("escavador_lote")).depth == 100
    await orq.close()


@pytest.mark.nats
def test_a_launch_that_stops_part_way_hands_back_its_batch(nats_url: str, tmp_path: Path):
    suffix = uuid.uuid4().hex[:8]
    worker = start_worker(nats_url, "eco", suffix)

    def payloads():  # type: ignore[no-untyped-def]
        yield from ({"n": i} for i in range(1200))
        raise OSError("the input file went away")  # e.g. a generator reading a file

    try:
        with Orquestrador(nats_url, home=tmp_path, responder_para=f"res_{suffix}") as orq:
            with pytest.raises(LaunchError, match="the input file went away") as caught:
                orq.iniciar_coletas(f"eco_{suffix}", payloads(), progress=False)
            lote = caught.value.lote
            assert caught.value.enviados == 1000 and len(lote) == 1000  # two chunks of 500 went out
            assert lote.id in str(caught.value)
            assert lote.wait(60).contagem() == {"ok": 1000}
    finally:
        worker.stop()
