"""The toolkit's messages as an AsyncAPI 3.0 document (``orq asyncapi`` writes it).

Teams that publish jobs from other languages, or that keep a catalogue of their event-driven
services, read AsyncAPI. The document is generated from the same msgspec structs that validate
envelopes on the wire and from the pydantic schemas of the plugins registered in this process,
so it cannot drift from what workers accept. It describes the configured broker as its server,
never its password.
"""

from __future__ import annotations

import copy
import json
from typing import Any
from urllib.parse import urlsplit

import msgspec
from pydantic import TypeAdapter
from pydantic.json_schema import models_json_schema

from orquestrador import __version__, settings
from orquestrador.brokers.base import DLQ_ATTEMPTS, DLQ_ERROR_TYPE, DLQ_REASON, dlq_of
from orquestrador.envelope import _TIMES, DEFAULT_RESULTS_QUEUE, Envelope
from orquestrador.errors import ConfigError
from orquestrador.eventos import SUBJECT as EVENTS_SUBJECT
from orquestrador.eventos import EventoJob
from orquestrador.plugins import Plugin, registry
from orquestrador.vocabulary import RESULTADO_DE

VERSION = "3.0.0"
REF = "#/components/schemas/{model}"
PROTOCOLS = {"nats": "nats", "tls": "nats", "redis": "redis", "rediss": "redis", "amqp": "amqp",
             "amqps": "amqps", "memory": "memory"}  # fmt: skip
DESCRIPTIONS = {
    "iniciar_coleta": "Asks an escavador (scraper) to collect; answered by resultado_coleta.",
    "iniciar_execucao": "Asks an executor to act; answered by resultado_execucao.",
    "resultado_coleta": "An escavador's answer: status ok with its result, or erro with the reason.",
    "resultado_execucao": "An executor's answer: status ok with its result, or erro with the reason.",
}


def _id(name: str) -> str:
    """A channel key: AsyncAPI keys allow letters, digits, '_' and '-'; no queue name ends in '__dlq'."""
    return name.replace(".dlq", "__dlq")


def _schemas(plugins: list[Plugin]) -> tuple[dict[str, Any], dict[str, str]]:
    """JSON Schemas of the envelope and of every plugin payload, sharing one ``$defs`` namespace."""
    models = list(dict.fromkeys(p.schema for p in plugins if p.schema is not None))
    keys, top = models_json_schema([(m, "validation") for m in models], ref_template=REF)
    schemas: dict[str, Any] = dict(top.get("$defs", {}))
    names = {m: value["$ref"].rsplit("/", 1)[1] for (m, _), value in keys.items()}
    wire = _wire_schemas()
    for name in wire.keys() & schemas.keys():  # a plugin model called Envelope or Erro keeps its name
        text = json.dumps(wire).replace(f'"{REF.format(model=name)}"', f'"{REF.format(model="orq_" + name)}"')
        wire = json.loads(text)
        wire[f"orq_{name}"] = wire.pop(name)
    schemas.update(wire)
    envelope = schemas["Envelope" if "Envelope" in wire else "orq_Envelope"]
    for tipo in (*RESULTADO_DE, *RESULTADO_DE.values()):
        specific = copy.deepcopy(envelope)
        specific["title"] = tipo
        specific["description"] = DESCRIPTIONS[tipo]
        specific["properties"]["tipo_evento"] = {"const": tipo, "title": "Tipo Evento"}
        # A request carries no status or erro; a result no priority, start or deadline.
        dropped = ("status", "erro") if tipo in RESULTADO_DE else ("prioridade", "executar_em", "expira_em")
        for field in dropped:
            specific["properties"].pop(field, None)
        schemas[tipo] = specific
    event = TypeAdapter(EventoJob).json_schema(ref_template=REF)
    schemas["EventoJob"] = event
    schemas["TopicMessage"] = copy.deepcopy(TOPIC_MESSAGE)
    plugin_schemas = {f"{p.kind}_{p.nome}": names[p.schema] for p in plugins if p.schema is not None}
    return schemas, plugin_schemas


def _wire_schemas() -> dict[str, Any]:
    """The schemas of Envelope and Erro, from the structs that check them on the wire.

    Shaped as pydantic wrote them when the envelope was a pydantic model (titles, unknown fields
    allowed, times as ``date-time``), so the document reads the same as before.
    """
    _, defs = msgspec.json.schema_components([Envelope], ref_template=REF.replace("{model}", "{name}"))
    for schema in defs.values():
        del schema["properties"]["extras"]  # the unknown fields themselves, not a field
        schema["additionalProperties"] = True
        for name, prop in schema["properties"].items():
            for option in prop.get("anyOf", []):  # said of the field, not of one of its types
                if "description" in option:
                    prop["description"] = option.pop("description")
            if "$ref" not in json.dumps(prop):
                prop["title"] = name.replace("_", " ").title()
    for name in _TIMES:
        prop = defs["Envelope"]["properties"][name]
        for option in prop.get("anyOf", [prop]):
            if option.get("type") == "string":
                option["format"] = "date-time"
    return defs


def _message(tipo: str, payload: dict[str, Any], title: str | None = None) -> dict[str, Any]:
    return {
        "name": tipo,
        "title": title or tipo,
        "summary": DESCRIPTIONS[tipo],
        "contentType": "application/json",
        "correlationId": {"$ref": "#/components/correlationIds/chain"},
        "payload": payload,
    }


def _server(url: str | None) -> dict[str, Any]:
    """The broker as an AsyncAPI server: host and path only, credentials never included."""
    if url is None:
        from orquestrador.brokers import embedded

        running = embedded.status(settings.home())
        if running is None:
            return {"host": "127.0.0.1", "protocol": "nats",
                    "description": "The embedded NATS server (JetStream), started on a free port on "
                    "first use; set ORQ_BROKER_URL or --broker to describe a shared broker."}  # fmt: skip
        url = running.url
    parts = urlsplit(settings.check_url(url))
    host = parts.hostname or parts.netloc or "localhost"
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None:
        host += f":{parts.port}"
    server: dict[str, Any] = {
        "host": host,
        "protocol": PROTOCOLS.get(parts.scheme, parts.scheme),
        "description": f"Configured broker {settings.redact_url(url)}",
    }
    if parts.path not in ("", "/"):
        server["pathname"] = parts.path
    if parts.scheme in ("tls", "rediss"):
        server["description"] += " (TLS)"
    if parts.username or parts.password:
        server["security"] = [{"$ref": "#/components/securitySchemes/credentials"}]
    return server


def _dead_letter_headers() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "Broker message headers a dead letter carries besides its original envelope.",
        "properties": {
            DLQ_REASON: {"type": "string", "description": "Why it was dead-lettered."},
            DLQ_ERROR_TYPE: {"type": "string", "description": "The exception type."},
            DLQ_ATTEMPTS: {"type": "string", "description": "Attempts made, as a decimal string."},
        },
    }


TOPIC_MESSAGE: dict[str, Any] = {
    "type": "object",
    "title": "TopicMessage",
    "description": "One message on a topic, whoever publishes it (README, Topics). Unknown fields are "
    "ignored on read.",
    "required": ["topico", "message_id", "timestamp"],
    "properties": {
        "topico": {"type": "string", "maxLength": 200, "pattern": r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$",
                   "description": "The concrete topic it was published on (no wildcards)."},
        "dados": {"description": "Any JSON value (at most 1 MiB for the whole message)."},
        "headers": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 4096}},
        "message_id": {"type": "string", "minLength": 1, "maxLength": 200, "description": "A uuid."},
        "timestamp": {"type": "string", "minLength": 1, "maxLength": 200,
                      "description": "When it was published, ISO 8601 UTC."},
        "correlation_id": {"type": "string", "maxLength": 200,
                           "description": "The job chain it belongs to, when it belongs to one."},
        "versao": {"const": 1},
    },
}  # fmt: skip


def _topics(messages: dict[str, Any], channels: dict[str, Any], operations: dict[str, Any]) -> None:
    """The topics: anyone's (``{topico}``), and the toolkit's own results and lifecycle events."""
    topic = REF.format(model="TopicMessage")
    results = [{"$ref": REF.format(model=t)} for t in RESULTADO_DE.values()]
    kinds = {
        "topico": ("topic message", "A message on a topic, published with publicar / orq emit.", {}),
        "topico_resultado": ("result on a topic", "A worker's final result: dados is the resultado_* "
                             "envelope as published.", {"dados": {"oneOf": results}}),
        "topico_evento": ("lifecycle event on a topic", "A job's lifecycle event: dados is the event.",
                          {"dados": {"$ref": REF.format(model="EventoJob")}}),
    }  # fmt: skip
    for name, (title, summary, fields) in kinds.items():
        payload = (
            {"allOf": [{"$ref": topic}, {"type": "object", "properties": fields}]}
            if fields
            else {"$ref": topic}
        )
        messages[name] = {
            "name": name,
            "title": title,
            "summary": summary,
            "contentType": "application/json",
            "correlationId": {"$ref": "#/components/correlationIds/chain"},
            "payload": payload,
        }
    alvo = {"description": "The escavador or executor name (a plugin queue without its prefix)."}
    channels["topicos"] = {
        "address": "{topico}",
        "description": "Topics anyone publishes on (orq.publicar, orq emit) and subscribes to with "
        "NATS-style patterns ('*' one token, '>' the rest), live or durable as the broker allows "
        "(README, Topics).",
        "parameters": {"topico": {"description": "A dot-separated topic, e.g. orders.created."}},
        "messages": {"topico": {"$ref": "#/components/messages/topico"}},
    }
    channels["topicos_resultados"] = {
        "address": "orq.{tipo_evento}.{alvo}",
        "description": "Every final result, copied by the worker that answered it (best effort, off the "
        "job's path); e.g. subscribe to orq.resultado_coleta.*.",
        "parameters": {"tipo_evento": {"enum": list(RESULTADO_DE.values())}, "alvo": alvo},
        "messages": {"topico_resultado": {"$ref": "#/components/messages/topico_resultado"}},
    }
    channels["topicos_eventos"] = {
        "address": "orq.eventos.{alvo}.{evento}",
        "description": "Every lifecycle event, copied by the worker (best effort); e.g. "
        "orq.eventos.*.dead_letter.",
        "parameters": {"alvo": alvo, "evento": {"enum": ["iniciado", "progresso", "retry", "dead_letter"]}},
        "messages": {"topico_evento": {"$ref": "#/components/messages/topico_evento"}},
    }
    for channel, message, sender in (
        ("topicos", "topico", "Any service publishes."),
        ("topicos_resultados", "topico_resultado", "Workers copy results."),
        ("topicos_eventos", "topico_evento", "Workers copy lifecycle events."),
    ):
        operations[f"publish_{channel}"] = _operation("send", channel, [message], sender)
        operations[f"subscribe_{channel}"] = _operation(
            "receive", channel, [message], "Subscribers of a matching pattern (orq.assinar, orq subscribe)."
        )  # fmt: skip


def document(
    url: str | None = None, plugins: list[Plugin] | None = None, results_queue: str | None = None
) -> dict[str, Any]:
    """The AsyncAPI 3.0 document for ``plugins`` (default: every registered one) on ``url``."""
    plugins = registry.all() if plugins is None else plugins
    results = settings.results_queue(results_queue) or DEFAULT_RESULTS_QUEUE
    schemas, plugin_schemas = _schemas(plugins)
    messages: dict[str, Any] = {
        tipo: _message(tipo, {"$ref": REF.format(model=tipo)}) for tipo in DESCRIPTIONS
    }
    messages["dead_letter"] = {
        "name": "dead_letter", "title": "dead letter", "contentType": "application/json",
        "summary": "The original message, unchanged, after its last failed attempt (or invalid input).",
        "headers": _dead_letter_headers(), "payload": {},
    }  # fmt: skip
    messages["evento"] = {
        "name": "evento", "title": "lifecycle event", "contentType": "application/json",
        "summary": "Best-effort progress of a job (started, progress, retry scheduled, dead-lettered);"
        " busy workers send a batch of them as one JSON array.",
        "payload": {"oneOf": [
            {"$ref": REF.format(model="EventoJob")},
            {"type": "array", "items": {"$ref": REF.format(model="EventoJob")}},
        ]},
    }  # fmt: skip
    results_id = _id(results)
    channels: dict[str, Any] = {
        results_id: {
            "address": results,
            "title": "results",
            "description": "Default results queue (responder_para) of the orchestrator.",
            "messages": {t: {"$ref": f"#/components/messages/{t}"} for t in RESULTADO_DE.values()},
        },
        "eventos": {
            "address": EVENTS_SUBJECT,
            "description": "Pub/sub subject (not a queue) of lifecycle events; losing one loses no job.",
            "messages": {"evento": {"$ref": "#/components/messages/evento"}},
        },
    }
    operations: dict[str, Any] = {
        f"collect_{results_id}": _operation("receive", results_id, RESULTADO_DE.values(),
                                            "The orchestrator records results in its store."),
        "emit_eventos": _operation("send", "eventos", ["evento"], "Workers report job progress."),
        "watch_eventos": _operation("receive", "eventos", ["evento"], "Orchestrators and widgets watch."),
    }  # fmt: skip
    _topics(messages, channels, operations)
    for plugin in plugins:
        tipo, fila = plugin.tipo_evento, plugin.fila
        message_ref = f"#/components/messages/{tipo}"
        if plugin.schema is not None:  # this plugin's payload, validated by its workers
            name = _id(f"{tipo}_{plugin.nome}")
            payload = {"$ref": REF.format(model=plugin_schemas[f"{plugin.kind}_{plugin.nome}"])}
            messages[name] = _message(tipo, {"allOf": [
                {"$ref": REF.format(model=tipo)},
                {"type": "object", "properties": {"payload": payload}},
            ]}, title=f"{tipo} for {plugin.kind} {plugin.nome}")  # fmt: skip
            message_ref = f"#/components/messages/{name}"
        channel_id, dlq_id = _id(fila), _id(dlq_of(fila))
        channels[channel_id] = {
            "address": fila,
            "title": f"{plugin.kind} {plugin.nome}",
            "description": f"Jobs for {plugin.kind} {plugin.nome!r} ({plugin.origem}).",
            "messages": {tipo: {"$ref": message_ref}},
        }
        channels[dlq_id] = {
            "address": dlq_of(fila),
            "description": f"Dead letters of {fila}: see them with `orq dlq list`, `orq dlq replay` them.",
            "messages": {"dead_letter": {"$ref": "#/components/messages/dead_letter"}},
        }
        resultado = RESULTADO_DE[tipo]
        launch = _operation("send", channel_id, [tipo], f"The orchestrator launches {plugin.kind} jobs.")
        launch["reply"] = {
            "address": {"location": "$message.payload#/responder_para",
                        "description": f"The requester's results queue (default {results})."},
            "channel": {"$ref": f"#/channels/{results_id}"},
            "messages": [{"$ref": f"#/channels/{results_id}/messages/{resultado}"}],
        }  # fmt: skip
        operations[f"launch_{channel_id}"] = launch
        operations[f"handle_{channel_id}"] = _operation(
            "receive", channel_id, [tipo], f"{plugin.kind} workers run {plugin.nome!r}; ack after the result."
        )
        operations[f"answer_{channel_id}"] = _operation(
            "send", results_id, [resultado], f"{plugin.kind} workers answer to the job's responder_para."
        )
        operations[f"inspect_{dlq_id}"] = _operation(
            "receive", dlq_id, ["dead_letter"], "Operators list and replay dead letters."
        )
    chain = {
        "location": "$message.payload#/correlation_id",
        "description": "Shared by every envelope of one job chain, results and pipeline children included.",
    }
    components: dict[str, Any] = {
        "schemas": schemas, "messages": messages, "correlationIds": {"chain": chain}
    }  # fmt: skip
    server = _server(settings.broker_url(url))
    if "security" in server:
        components["securitySchemes"] = {
            "credentials": {"type": "userPassword", "description": "Broker user and password (not shown)."}
        }
    return {
        "asyncapi": VERSION,
        "info": {
            "title": "orquestrador job envelopes",
            "version": __version__,
            "description": "Wire format v1: JSON envelopes of job chains (iniciar_* jobs, resultado_* "
            "answers sharing one correlation_id). Fields beyond correlation_id, tipo_evento, payload "
            "and timestamp are optional on read; unknown fields are kept. headers.traceparent carries "
            "the W3C trace context of the chain.",
        },
        "defaultContentType": "application/json",
        "servers": {"broker": server},
        "channels": channels,
        "operations": operations,
        "components": components,
    }


def _operation(action: str, channel_id: str, messages: Any, description: str) -> dict[str, Any]:
    return {
        "action": action,
        "channel": {"$ref": f"#/channels/{channel_id}"},
        "description": description,
        "messages": [{"$ref": f"#/channels/{channel_id}/messages/{m}"} for m in messages],
    }


def render(doc: dict[str, Any], fmt: str) -> str:
    """JSON always; YAML only where PyYAML is installed (it is not a dependency of ours)."""
    if fmt == "json":
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    try:
        import yaml
    except ImportError:
        raise ConfigError("YAML output needs PyYAML: pip install pyyaml, or use --format json") from None
    return str(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))


__all__ = ["document", "render"]
