from __future__ import annotations

import json

import pytest

from orquestrador.envelope import Envelope, decode, encode, from_dict, nova
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
    assert isinstance(from_dict(data), Envelope)


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


def test_fields_we_do_not_know_travel_on_from_keywords_changes_and_the_wire():
    from orquestrador.envelope import Erro, to_dict

    env = nova("iniciar_coleta", {}, alvo="x").with_changes(prioridade=3, responder_final="fila")
    assert (env.prioridade, env.extras) == (3, {"responder_final": "fila"})
    erro = Erro(tipo="ValueError", mensagem="no", fila_dlq="escavador_x.dlq")
    result = Envelope(correlation_id="c", tipo_evento="resultado_coleta", payload={}, timestamp=env.timestamp,
                      status="erro", erro=erro, worker="w1")  # fmt: skip
    again = decode(encode(result))
    assert again.extras == {"worker": "w1"} and again.erro == erro
    assert again.erro is not None and again.erro.extras == {"fila_dlq": "escavador_x.dlq"}
    assert again.with_changes(message_id=None) == result
    assert to_dict(erro) == {"tipo": "ValueError", "mensagem": "no", "fila_dlq": "escavador_x.dlq"}
    # "extras" on the wire is one more unknown field, not the struct's own.
    wire_extras = decode(json.dumps({**NOTE_EXAMPLE, "extras": {"a": 1}}).encode())
    assert wire_extras.extras == {"extras": {"a": 1}}
    assert json.loads(encode(wire_extras))["extras"] == {"a": 1}


@pytest.mark.parametrize(
    ("sent", "read"),
    [
        ("2025-10-14T14:00:00+02:00", "2025-10-14T12:00:00Z"),
        ("2025-10-14T12:00:00", "2025-10-14T12:00:00Z"),  # naive: taken as UTC
        ("2025-10-14 12:00:00.5Z", "2025-10-14T12:00:00.500000Z"),
        (1760443200, "2025-10-14T12:00:00Z"),  # seconds, as pydantic read numbers
        (1760443200500, "2025-10-14T12:00:00.500000Z"),  # milliseconds above 2e10, as pydantic
        ("1760443200", "2025-10-14T12:00:00Z"),
        ("2025-10-14", "2025-10-14T00:00:00Z"),
        ("2025-10-14T12:00", "2025-10-14T12:00:00Z"),
    ],
)
def test_times_are_read_as_pydantic_read_them_and_written_in_utc(sent: object, read: str):
    env = decode(json.dumps({**NOTE_EXAMPLE, "timestamp": sent, "expira_em": sent}).encode())
    data = json.loads(encode(env))
    assert (data["timestamp"], data["expira_em"]) == (read, read)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"prioridade": True}, "prioridade"),
        ({"prioridade": "5"}, "prioridade"),
        ({"prioridade": 5.0}, "prioridade"),
        ({"prioridade": 10}, "prioridade"),
        ({"tentativa": 0}, "tentativa"),
        ({"correlation_id": ""}, "correlation_id"),
        ({"message_id": "m" * 201}, "message_id"),
        ({"status": "segredo-123"}, "status"),
        ({"tipo_evento": "segredo-123"}, "tipo_evento"),
        ({"headers": {"k": 1}}, "headers"),
        ({"erro": {"tipo": "X"}}, "erro.mensagem"),
        ({"timestamp": "0001-01-01T00:00:00+01:00"}, "timestamp"),
    ],
)
def test_a_refusal_names_the_field_in_one_line_and_never_the_value(changes: dict[str, object], field: str):
    with pytest.raises(EnvelopeError) as info:
        decode(json.dumps({**NOTE_EXAMPLE, **changes}).encode())
    reason = info.value.reason
    assert reason.startswith(f"not a valid envelope: {field}"), reason
    assert "segredo" not in reason and "\n" not in reason


def test_lax_numbers_and_nulls_pydantic_accepted_are_still_accepted():
    body = {**NOTE_EXAMPLE, "tentativa": "2", "versao": 1.0, "alvo": None, "erro": None, "prioridade": None}
    env = decode(json.dumps(body).encode())
    assert (env.tentativa, env.versao, env.alvo, env.erro, env.prioridade) == (2, 1, None, None, None)
    assert "alvo" not in json.loads(encode(env))


def test_nesting_is_bounded_at_200_levels_wherever_decode_is_called_from():
    def nested(n: int) -> bytes:
        return (
            json.dumps({**NOTE_EXAMPLE, "payload": None})
            .replace("null", '{"n":' * n + "1" + "}" * n)
            .encode()
        )

    assert decode(nested(199)).payload
    for depth in (200, 950, 5000):
        with pytest.raises(EnvelopeError, match="not valid JSON: nested more than 200 levels"):
            decode(nested(depth))


def test_constructing_an_invalid_envelope_fails_where_it_is_made():
    from datetime import datetime

    with pytest.raises(EnvelopeError, match="prioridade"):
        Envelope(correlation_id="c", tipo_evento="iniciar_coleta", payload={}, timestamp=datetime.now(),
                 prioridade=True)  # fmt: skip
    env = Envelope(correlation_id="c", tipo_evento="iniciar_coleta", payload={}, status="erro",
                   timestamp=datetime(2025, 10, 14, 12),
                   erro={"tipo": "X", "mensagem": "y", "l": 3})  # fmt: skip
    assert env.timestamp.tzinfo is not None and env.erro is not None and env.erro.extras == {"l": 3}


def test_payload_values_pydantic_wrote_are_still_written():
    import pickle
    from pathlib import Path

    from pydantic import BaseModel

    class Ponto(BaseModel):
        x: int

    env = nova("iniciar_coleta", {"arquivo": Path("/tmp/a"), "ponto": Ponto(x=1)})
    assert json.loads(encode(env))["payload"] == {"arquivo": "/tmp/a", "ponto": {"x": 1}}
    plain = nova("iniciar_coleta", {"a": 1}).with_changes(worker="w")
    assert pickle.loads(pickle.dumps(plain)) == plain


def test_a_worker_process_never_imports_pydantic_unless_a_plugin_declares_a_schema():
    import subprocess
    import sys

    code = (
        "import sys, orquestrador.worker, orquestrador.cli, orquestrador.brokers.kafka, "
        "orquestrador.brokers.bullmq, orquestrador.brokers.redis, orquestrador.brokers.nats, "
        "orquestrador.brokers.rabbitmq\n"
        "from orquestrador import envelope as wire, plugins\n"
        "from orquestrador.cli import build\n"
        "from orquestrador.worker.handler import payload_for\n"
        "try:\n"
        "    build(('worker',))(['worker', 'executor', '--help'])  # the command line parsed\n"
        "except SystemExit:\n"
        "    pass\n"
        "env = wire.decode(wire.encode(wire.nova('iniciar_coleta', {'a': 1})))\n"
        "plain = plugins.Plugin('escavador', 'p', lambda p: p, 't')\n"
        "assert plugins.payload_dict(payload_for(plain, env.payload)) == {'a': 1}\n"
        "print('pydantic loaded:', 'pydantic' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pydantic loaded: False" in out.stdout, out.stdout[-500:] + out.stderr
