"""``orq.topicos(padrao)``: the last messages of a pattern, live, escaped, throttled."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from orquestrador import Orquestrador
from orquestrador.notebook import Topicos
from tests.notebook.helpers import ESCAPED, EVIL, wait_until


@pytest.fixture
def orq() -> Iterator[Orquestrador]:
    with Orquestrador(f"memory://{uuid.uuid4().hex}") as o:
        yield o


def test_shows_the_last_n_matching_messages_newest_first(orq: Orquestrador) -> None:
    view = orq.topicos("pedidos.*", n=3)
    assert isinstance(view, Topicos) and "no message yet" in view.table.value
    for i in range(5):
        orq.publicar("pedidos.novo", {"i": i}, correlation_id=f"c-{i}")
    orq.publicar("pedidos.novo.eu", {"i": 99})  # not for '*'
    wait_until(lambda: "5 message(s)" in view.status.value)
    assert [m.dados["i"] for m in view.mensagens] == [4, 3, 2]
    table = view.table.value
    assert table.index("c-4") < table.index("c-3") < table.index("c-2") and "c-1" not in table
    assert "99" not in table and "live" in view.status.value
    bundle = view._repr_mimebundle_()
    assert bundle is not None


def test_everything_shown_is_escaped(orq: Orquestrador) -> None:
    view = orq.topicos(">")
    orq.publicar("ataque.x", {"t": EVIL}, headers={"h": EVIL}, correlation_id=EVIL)
    wait_until(lambda: ESCAPED in view.table.value)
    assert "<img" not in view.table.value and view.table.value.count(ESCAPED) == 3
    assert "<img" not in view.status.value


def test_stopping_cancels_the_subscription_and_closing_says_so(orq: Orquestrador) -> None:
    view = orq.topicos("a.b")
    orq.publicar("a.b", 1)
    wait_until(lambda: "1 message(s)" in view.status.value)
    view.stop_button.click()
    assert not view.subscription.ativa and view.finished and "stopped" in view.status.value
    orq.publicar("a.b", 2)
    other = orq.topicos("c.d")
    orq.close()
    assert "closed" in other.status.value and other.stop_button.disabled
    assert len(view.mensagens) == 1


def test_bad_arguments_are_refused(orq: Orquestrador) -> None:
    with pytest.raises(ValueError, match="1 to 1000"):
        orq.topicos("a.b", n=0)
    with pytest.raises(ValueError, match="bad pattern"):  # a TopicError is a ValueError
        orq.topicos("a.#")


def test_a_burst_is_redrawn_at_the_throttled_rate(orq: Orquestrador) -> None:
    view = orq.topicos("burst.*", n=5)
    redraws: list[object] = []
    view.table.observe(redraws.append, names="value")
    for i in range(500):
        orq.publicar("burst.x", i)
    wait_until(lambda: "500 message(s)" in view.status.value)
    assert [m.dados for m in view.mensagens] == [499, 498, 497, 496, 495]
    assert len(redraws) < 50, f"{len(redraws)} redraws for 500 messages"
