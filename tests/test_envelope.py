from __future__ import annotations

import json

import pytest

from orquestrador.envelope import Envelope, decode, encode, nova
from orquestrador.errors import EnvelopeError, PayloadTooLarge

NOTE_EXAMPLE = {
    "correlation_id": "123e4567-e89b-12d3-a456-426614174000",
    "tipo_evento": "iniciar_coleta",
    "payload": {"param": "valor"},
    "timestamp": "2025-10-14T12:00:00Z",
}


def test_the_interface_notes_four_field_message_is_a_valid_envelope():
    env = decode(json.dumps(NOTE_EXAMPLE).encode())
    assert env.correlation_id == NOTE_EXAMPLE["correlation_id"]
    assert env.payload == {"param": "valor"}
    assert env.timestamp.isoformat() == "2025-10-14T12:00:00+00:00"
    assert env.message_id, "a stable message_id is derived when the producer sent none"
    assert decode(json.dumps(NOTE_EXAMPLE).encode()).message_id == env.message_id


def test_unknown_fields_survive_a_round_trip():
    body = json.dumps({**NOTE_EXAMPLE, "prioridade": 7, "origem": {"time": "dados"}}).encode()
    again = json.loads(encode(decode(body)))
    assert again["prioridade"] == 7
    assert again["origem"] == {"time": "dados"}
    assert again["timestamp"] == "2025-10-14T12:00:00Z"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\x00\xff", "not valid JSON"),
        (b"[1, 2]", "not an envelope"),
        (b'"text"', "not an envelope"),
        (json.dumps({**NOTE_EXAMPLE, "tipo_evento": "apagar_tudo"}).encode(), "tipo_evento"),
        (json.dumps({**NOTE_EXAMPLE, "payload": [1]}).encode(), "payload"),
        (json.dumps({k: v for k, v in NOTE_EXAMPLE.items() if k != "timestamp"}).encode(), "timestamp"),
        (json.dumps({**NOTE_EXAMPLE, "timestamp": "yesterday"}).encode(), "timestamp"),
    ],
)
def test_bad_bytes_become_a_typed_error_with_a_reason(body: bytes, reason: str):
    with pytest.raises(EnvelopeError) as info:
        decode(body)
    assert reason in info.value.reason
    assert "\n" not in info.value.reason


def test_payload_over_the_limit_is_refused_with_what_to_do():
    env = nova("iniciar_coleta", {"blob": "x" * 2_000_000}, alvo="http")
    with pytest.raises(PayloadTooLarge, match="send a reference"):
        encode(env)
    assert len(encode(env, max_bytes=4_000_000)) > 2_000_000


def test_new_envelopes_carry_ids_and_version():
    env = nova("iniciar_execucao", {"a": 1}, alvo="salvar", correlation_id="c-1")
    data = json.loads(encode(env))
    assert data["correlation_id"] == "c-1"
    assert data["versao"] == 1
    assert data["message_id"] != data["correlation_id"]
    assert isinstance(Envelope.model_validate(data), Envelope)


def test_new_ids_are_unique_version_4_uuids_even_across_a_fork():
    import os
    import uuid as _uuid

    from orquestrador.envelope import new_id

    ids = [new_id() for _ in range(5000)]
    assert len(set(ids)) == 5000
    for value in ids[:: 97]:
        parsed = _uuid.UUID(value)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, _uuid.RFC_4122, value)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child must not reuse the parent's buffered random bytes
        os.write(write, new_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    assert child != new_id() and child not in ids
