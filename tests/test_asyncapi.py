"""`orq asyncapi`: a well-formed AsyncAPI 3 document whose schemas accept the envelopes we send."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import BaseModel, Field

from orquestrador import asyncapi
from orquestrador import envelope as wire
from orquestrador.eventos import EventoJob, encode_many
from orquestrador.plugins import Plugin, registry
from tests.test_cli import orq

URL = "amqp://operador:s3cret-pw@127.0.0.1:5672/%2F"


class Pagina(BaseModel):
    url: str
    profundidade: int = Field(default=1, ge=0)


class Pedido(BaseModel):
    paginas: list[Pagina]


@pytest.fixture
def plugins() -> Iterator[tuple[Plugin, Plugin]]:
    tag = uuid.uuid4().hex[:8]
    declared = (
        Plugin("escavador", f"paginas_{tag}", lambda p: p, "tests", schema=Pedido),
        Plugin("executor", f"livre_{tag}", lambda p: p, "tests"),
    )
    for plugin in declared:
        registry.register(plugin)
    yield declared
    for plugin in declared:
        registry.unregister(plugin.kind, plugin.nome)


# The fields AsyncAPI 3.0.0 allows on each object (its JSON Schema sets additionalProperties: false).
ALLOWED = {
    "document": {"asyncapi", "id", "info", "servers", "defaultContentType", "channels", "operations",
                 "components"},
    "server": {"host", "protocol", "protocolVersion", "pathname", "description", "title", "summary",
               "variables", "security", "tags", "externalDocs", "bindings"},
    "channel": {"address", "messages", "title", "summary", "description", "servers", "parameters", "tags",
                "externalDocs", "bindings"},
    "operation": {"action", "channel", "title", "summary", "description", "security", "tags",
                  "externalDocs", "bindings", "traits", "messages", "reply"},
    "reply": {"address", "channel", "messages"},
    "message": {"headers", "payload", "correlationId", "contentType", "name", "title", "summary",
                "description", "tags", "externalDocs", "bindings", "examples", "traits"},
}  # fmt: skip


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"{ref} does not resolve"
        node = node[part]
    return node


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _validator(doc: dict[str, Any], message: str) -> jsonschema.Validator:
    """Validates against a message's payload as AsyncAPI does (JSON Schema draft-07), refs resolved."""
    return jsonschema.Draft7Validator({**doc, "$ref": f"#/components/messages/{message}/payload"})


def test_the_document_is_structurally_valid_asyncapi_3(plugins: tuple[Plugin, Plugin]):
    doc = asyncapi.document(URL)
    assert doc["asyncapi"] == "3.0.0"
    assert doc["info"]["title"] and doc["info"]["version"]
    assert set(doc) <= ALLOWED["document"]
    for server in doc["servers"].values():
        assert {"host", "protocol"} <= set(server) <= ALLOWED["server"]
    for message in doc["components"]["messages"].values():
        assert set(message) <= ALLOWED["message"]
    for ref in _refs(doc):
        _resolve(doc, ref)
    for channel_id, channel in doc["channels"].items():
        assert channel["address"] and channel["messages"], channel_id
        assert set(channel) <= ALLOWED["channel"]
        for message in channel["messages"].values():
            assert "payload" in _resolve(doc, message["$ref"])
    for name, operation in doc["operations"].items():
        assert operation["action"] in ("send", "receive"), name
        assert set(operation) <= ALLOWED["operation"]
        channel_ref = operation["channel"]["$ref"]
        for message in operation["messages"]:
            # AsyncAPI 3: an operation's messages are messages of its own channel.
            assert message["$ref"].startswith(channel_ref + "/messages/"), name
        if "reply" in operation:
            assert set(operation["reply"]) <= ALLOWED["reply"]
            assert operation["reply"]["address"]["location"].startswith("$message.payload#/")
            _resolve(doc, operation["reply"]["channel"]["$ref"])
    for schema in doc["components"]["schemas"].values():
        jsonschema.Draft7Validator.check_schema(schema)
    for message in doc["components"]["messages"].values():
        jsonschema.Draft7Validator.check_schema(message["payload"])


def test_message_schemas_accept_real_envelopes_and_refuse_wrong_ones(plugins: tuple[Plugin, Plugin]):
    doc = asyncapi.document(URL)
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    job = wire.nova("iniciar_coleta", {"url": "http://x"}, alvo="http", responder_para="r",
                    headers={"traceparent": traceparent})  # fmt: skip
    encoded = json.loads(wire.encode(job))
    by_hand = {"correlation_id": "c1", "tipo_evento": "iniciar_execucao", "payload": {},
               "timestamp": "2025-10-14T12:00:00Z"}  # fmt: skip
    failed = job.with_changes(tipo_evento="resultado_coleta", status="erro", causation_id=job.message_id,
                              erro=wire.Erro(tipo="ValueError", mensagem="no"), worker="w1")  # fmt: skip
    _validator(doc, "iniciar_coleta").validate(encoded)
    _validator(doc, "iniciar_execucao").validate(by_hand)
    _validator(doc, "resultado_coleta").validate(json.loads(wire.encode(failed)))
    _validator(doc, "evento").validate(json.loads(EventoJob("retry", "c", "m", "a", "w", 2).encode()))
    batch = encode_many([
        EventoJob("iniciado", "c", "m", "a", "w", 1),
        EventoJob("retry", "c", "m", "a", "w", 2),
    ])
    _validator(doc, "evento").validate(json.loads(batch))
    assert not _validator(doc, "iniciar_coleta").is_valid(json.loads(wire.encode(failed)))
    assert not _validator(doc, "iniciar_coleta").is_valid({**encoded, "payload": "not an object"})
    assert not _validator(doc, "resultado_coleta").is_valid({**encoded, "tipo_evento": "resultado_coleta",
                                                             "status": "talvez"})  # fmt: skip

    # A plugin that declares a payload schema gets its own message: its payload is checked too.
    escavador = plugins[0]
    own = doc["channels"][escavador.fila]["messages"]["iniciar_coleta"]["$ref"]
    assert own != "#/components/messages/iniciar_coleta"
    validator = _validator(doc, own.rsplit("/", 1)[1])
    good = {**encoded, "payload": {"paginas": [{"url": "http://a", "profundidade": 2}]}}
    validator.validate(good)
    assert not validator.is_valid({**encoded, "payload": {"paginas": [{"profundidade": 2}]}})
    assert not validator.is_valid({**encoded, "payload": {"paginas": [{"url": "u", "profundidade": -1}]}})


def test_registered_plugins_are_channels_with_their_dead_letter_queues(plugins: tuple[Plugin, Plugin]):
    doc = asyncapi.document(URL, results_queue="res_equipe")
    addresses = {c["address"] for c in doc["channels"].values()}
    for plugin in plugins:
        assert {plugin.fila, plugin.fila + ".dlq"} <= addresses
        assert f"launch_{plugin.fila}" in doc["operations"]
        assert doc["operations"][f"handle_{plugin.fila}"]["action"] == "receive"
    assert {"res_equipe", "orq.eventos"} <= addresses
    # Built-in plugins come from entry points: listed without importing anything by hand.
    assert "escavador_http" in addresses
    executor = doc["channels"][plugins[1].fila]["messages"]["iniciar_execucao"]["$ref"]
    assert executor == "#/components/messages/iniciar_execucao"


@pytest.mark.parametrize(
    ("url", "host", "protocol"),
    [
        (URL, "127.0.0.1:5672", "amqp"),
        ("redis://:s3cret-pw@127.0.0.1:6379/0", "127.0.0.1:6379", "redis"),
        ("nats://operador:s3cret-pw@127.0.0.1:4222", "127.0.0.1:4222", "nats"),
        ("nats://s3cret-pw@127.0.0.1:4222", "127.0.0.1:4222", "nats"),  # a NATS token
    ],
)
def test_the_server_is_the_configured_broker_without_its_secret(url: str, host: str, protocol: str):
    doc = asyncapi.document(url, plugins=[])
    server = doc["servers"]["broker"]
    assert (server["host"], server["protocol"]) == (host, protocol)
    assert "s3cret-pw" not in json.dumps(doc)
    assert server["security"] == [{"$ref": "#/components/securitySchemes/credentials"}]


def test_orq_asyncapi_writes_yaml_or_json_for_the_configured_broker(tmp_path):
    suffix = uuid.uuid4().hex[:8]
    env = {"ORQ_BROKER_URL": URL, "ORQ_TEST_PLUGIN_SUFFIX": suffix, "ORQ_HOME": str(tmp_path / "h")}
    out = tmp_path / "api.yaml"
    result = orq("asyncapi", "--module", "tests.plugins_teste", "--output", str(out), env=env)
    assert result.returncode == 0, result.stderr
    as_yaml = yaml.safe_load(out.read_text())
    assert f"escavador_eco_{suffix}" in as_yaml["channels"]
    assert as_yaml["servers"]["broker"]["host"] == "127.0.0.1:5672"
    assert "s3cret-pw" not in out.read_text() + result.stdout + result.stderr
    printed = orq("asyncapi", "--module", "tests.plugins_teste", "--format", "json", env=env)
    assert printed.returncode == 0, printed.stderr
    assert json.loads(printed.stdout) == as_yaml
    bad = orq("asyncapi", "--format", "xml", env=env)
    assert bad.returncode == 2 and "json or yaml" in bad.stderr


def test_topic_messages_match_their_schemas_and_the_toolkit_topics_are_channels():
    from orquestrador.topics import TopicMessage
    from orquestrador.worker import topics

    doc = asyncapi.document(URL, plugins=[])
    addresses = {c["address"] for c in doc["channels"].values()}
    assert {"{topico}", "orq.{tipo_evento}.{alvo}", "orq.eventos.{alvo}.{evento}"} <= addresses
    published = TopicMessage("orders.created", {"id": 7}, headers={"k": "v"}, correlation_id="c")
    _validator(doc, "topico").validate(json.loads(published.encode()))
    assert not _validator(doc, "topico").is_valid({**published.as_dict(), "topico": "orders.*"})
    assert not _validator(doc, "topico").is_valid({"dados": 1})

    job = wire.nova("iniciar_coleta", {"url": "http://x"}, alvo="http")
    answer = job.with_changes(tipo_evento="resultado_coleta", status="ok", causation_id=job.message_id)

    class Job:  # what the worker's topic copy reads of a finished job
        envelope = job
        plugin = Plugin("escavador", "http", lambda p: p, "tests")

    at = topics.now()
    topic, body = topics.result_body(Job, wire.encode(answer), at)  # type: ignore[arg-type,misc]
    assert topic == "orq.resultado_coleta.http"
    _validator(doc, "topico_resultado").validate(json.loads(body))
    assert TopicMessage.decode(body).dados["causation_id"] == job.message_id
    event = EventoJob("retry", "c", "m", "http", "w", 2)
    topic, body = topics.event_body(event, event.encode(), at)  # type: ignore[misc]
    assert topic == "orq.eventos.http.retry"
    _validator(doc, "topico_evento").validate(json.loads(body))
    assert not _validator(doc, "topico_evento").is_valid({**json.loads(body), "dados": {"evento": "x"}})
