"""Lifecycle events on the wire: one object, or a batch (JSON array) as busy workers send them."""

from __future__ import annotations

import json

from orquestrador.eventos import EventoJob, encode_many


def _evento(n: int) -> EventoJob:
    return EventoJob("iniciado", f"c{n}", f"m{n}", "alvo", "w:1", 1, at=100.0 + n)


def test_a_batch_round_trips_in_order_and_a_single_event_stays_an_object():
    batch = [_evento(i) for i in range(3)]
    assert EventoJob.decode_many(encode_many(batch)) == batch
    one = _evento(9).encode()
    assert json.loads(one)["message_id"] == "m9"  # plain subscribers still see one object
    assert EventoJob.decode(one) == _evento(9)
    assert EventoJob.decode_many(one) == [_evento(9)]


def test_garbage_on_the_subject_is_skipped_not_raised():
    good = json.loads(_evento(1).encode())
    body = json.dumps([good, {"evento": "iniciado"}, 7, "x"]).encode()
    assert EventoJob.decode_many(body) == [_evento(1)]
    assert EventoJob.decode_many(b"\xff not json") == []
    assert EventoJob.decode(encode_many([_evento(1), _evento(2)])) is None  # a batch is not one event
