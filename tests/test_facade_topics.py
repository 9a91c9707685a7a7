"""``publicar`` and ``assinar`` as scripts, notebooks and services use them (memory broker: the
facade's own behaviour; the brokers' topic semantics are tests/contract/test_topics.py's)."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator

import pytest

from orquestrador import AsyncOrquestrador, Orquestrador, TopicError, TopicMessage
from orquestrador.brokers import connect
from tests.conftest import eventually
from tests.workers import wait_for


@pytest.fixture
def orq() -> Iterator[Orquestrador]:
    with Orquestrador(f"memory://{uuid.uuid4().hex}") as o:
        yield o


def test_a_wildcard_callback_gets_decoded_messages_on_the_loop_thread(orq: Orquestrador) -> None:
    got: list[tuple[TopicMessage, str]] = []
    sub = orq.assinar("orders.*", lambda m: got.append((m, threading.current_thread().name)))
    sent = orq.publicar("orders.created", {"id": 7}, headers={"origem": "loja"}, correlation_id="c-1")
    orq.publicar("orders.created.eu", {"id": 8})  # '*' is one token: not this one
    orq.publicar("payments.created", {"id": 9})
    orq.publicar("orders.paid", [1, 2])
    wait_for(lambda: len(got) == 2, 5)
    first, thread = got[0]
    assert first == sent and first.dados == {"id": 7} and first.headers == {"origem": "loja"}
    assert first.correlation_id == "c-1" and first.message_id and first.timestamp
    assert [m.topico for m, _ in got] == ["orders.created", "orders.paid"]
    assert thread == "orquestrador-loop"  # the core's loop: safe to touch widgets there
    assert sub.recebidas == 2 and sub.ativa
    sub.cancelar()
    sub.cancelar()  # twice is fine
    orq.publicar("orders.late", 1)
    assert sub.receber(0.2) is None and len(got) == 2 and not sub.ativa


def test_async_callbacks_and_failing_callbacks(orq: Orquestrador) -> None:
    got: list[object] = []

    async def slow(message: TopicMessage) -> None:
        await asyncio.sleep(0.01)
        if message.dados == "boom":
            raise RuntimeError("a callback bug")
        got.append(message.dados)

    with orq.assinar("a.>", slow):
        orq.publicar("a.b", "boom")  # logged; the subscription goes on
        orq.publicar("a.b.c", "ok")
        wait_for(lambda: got == ["ok"], 5)


def test_the_iterator_form(orq: Orquestrador) -> None:
    with orq.assinar("jobs.>") as sub:
        for n in range(3):
            orq.publicar(f"jobs.n{n}", n)
        assert [m.dados for m in _take(sub, 3)] == [0, 1, 2]
        assert sub.receber(0.1) is None  # nothing more: None after the timeout
    assert not sub.ativa
    with pytest.raises(TypeError, match="callback"):
        iter(orq.assinar("x.y", print))


def _take(sub: object, n: int) -> list[TopicMessage]:
    out = []
    for message in sub:  # type: ignore[attr-defined]
        out.append(message)
        if len(out) == n:
            break
    return out


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda o: o.publicar("orders.*", 1), "wildcards belong in subscriptions"),
        (lambda o: o.publicar("", 1), "non-empty"),
        (lambda o: o.publicar("a.b", {1, 2}), "not JSON"),
        (lambda o: o.publicar("a.b", 1, headers={"k": 1}), "headers"),
        (lambda o: o.publicar("a.b", 1, headers="k=v"), "headers"),
        (lambda o: o.publicar("a.b", 1, correlation_id=5), "correlation_id"),
        (lambda o: o.publicar("a.b", 1, correlation_id="c" * 201), "at most 200"),
        (lambda o: o.assinar("orders.#", print), "bad pattern"),
        (lambda o: o.assinar("orders.>.x", print), "bad pattern"),
        (lambda o: o.assinar("orders.*", print, duravel="bad name"), "durable"),
        (lambda o: o.assinar("orders.*", print, duravel="audit"), "live topic subscriptions only"),
    ],
)
def test_bad_input_is_a_clear_topic_error(orq: Orquestrador, call: object, match: str) -> None:
    with pytest.raises(TopicError, match=match):
        call(orq)  # type: ignore[operator]


def test_closing_the_orquestrador_ends_its_subscriptions() -> None:
    orq = Orquestrador(f"memory://{uuid.uuid4().hex}")
    sub = orq.assinar("a.*", print)
    orq.close()
    assert not sub.ativa
    sub.cancelar()  # after close: nothing to do, no error
    assert sub.receber(0.1) is None


async def test_async_twin_iterates_and_skips_malformed_bodies() -> None:
    url = f"memory://{uuid.uuid4().hex}"
    core = AsyncOrquestrador(url)
    await core.start()
    other = await connect(url)
    try:
        async with core.assinar("orq.teste.*") as sub:
            await other.publish_topic("orq.teste.x", b"not a topic message")
            await other.publish_topic("orq.teste.x", b'{"topico": "orq.teste.x"}')
            sent = await core.publicar("orq.teste.x", {"ok": True}, correlation_id="c")
            received = []
            async for message in sub:
                received.append(message)
                break
            assert received == [sent]
        assert not sub.ativa
        got: list[TopicMessage] = []
        sub2 = await core.assinar("orq.teste.>", got.append)
        await core.publicar("orq.teste.y.z", 1)
        await eventually(lambda: got)
        assert "live" in repr(sub2) and "recebidas=1" in repr(sub2)
    finally:
        await other.close()
        await core.close()
    assert not sub2.ativa


def test_assinar_works_inside_a_running_event_loop_like_jupyter() -> None:
    async def notebook_cell() -> list[object]:
        # Jupyter runs cells inside its own loop; the facade must not touch it.
        got: list[object] = []
        with Orquestrador(f"memory://{uuid.uuid4().hex}") as orq, orq.assinar("cell.*", got.append):
            orq.publicar("cell.x", 1)
            wait_for(lambda: len(got) == 1, 5)
        return got

    assert [m.dados for m in asyncio.run(notebook_cell())] == [1]  # type: ignore[attr-defined]


@pytest.mark.rabbitmq
def test_a_durable_iterator_acks_what_it_finished_and_gives_back_the_rest(rabbitmq_url: str) -> None:
    import time

    prefix, name = f"t{uuid.uuid4().hex[:8]}", f"d{uuid.uuid4().hex[:8]}"
    with Orquestrador(rabbitmq_url, responder_para=f"ft_{uuid.uuid4().hex[:8]}") as orq:
        try:
            with orq.assinar(f"{prefix}.*", duravel=name) as sub:
                for n in range(3):
                    orq.publicar(f"{prefix}.x", n)
                first, second = sub.receber(10), sub.receber(10)  # asking for the second acks the first
                assert (first and first.dados, second and second.dados) == (0, 1)
                started = time.monotonic()
                sub.cancelar()  # 1 is not finished: given back, not acked
                assert time.monotonic() - started < 5
            with orq.assinar(f"{prefix}.*", duravel=name) as again:
                got = [m.dados for m in (again.receber(20), again.receber(20)) if m is not None]
            assert got == [1, 2]
        finally:
            orq.apagar_assinatura(name)
