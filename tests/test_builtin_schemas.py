"""The built-in plugins declare their payloads with ``schema=``: a worker refuses a bad payload
with a message naming the plugin and the field (never the value, which may be a secret), and
``orq asyncapi`` documents every one of them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orquestrador.errors import PermanentFailure
from orquestrador.plugins import payload_dict, registry
from orquestrador.worker.handler import payload_for
from tests.test_cli import orq

SECRET = "tok-3f9a1c"

# (kind, name, schema, a good payload, a bad one, the field the refusal must name)
CASES = [
    ("escavador", "http", "PedidoHttp", {"url": "https://x.example/"}, {"url": ["https://x.example/"]},
     "url"),
    ("escavador", "json_api", "PedidoJsonApi",
     {"url": "https://api.example/v1", "paginacao": {"tipo": "page"}, "headers": {"Authorization": SECRET}},
     {"url": "https://api.example/v1", "headers": {"Authorization": [SECRET]}}, "headers.Authorization"),
    ("escavador", "sitemap", "PedidoSitemap", {"url": "https://x.example/sitemap.xml", "max_urls": 10},
     {"url": "https://x.example/sitemap.xml", "max_urls": "10"}, "max_urls"),
    ("escavador", "rss", "PedidoRss", {"url": "https://x.example/feed", "timeout": 5},
     {"url": "https://x.example/feed", "headers": {"Cookie": SECRET}, "max_resumo": 2.5}, "max_resumo"),
    ("executor", "python", "PedidoPython", {"funcao": "pkg.mod:f", "args": {"a": 1}},
     {"funcao": "pkg.mod:f", "args": [SECRET]}, "args"),
    ("executor", "comando", "PedidoComando", {"programa": "wc", "args": ["-l"], "env": {"TOKEN": SECRET}},
     {"programa": "wc", "args": ["-l", 3], "env": {"TOKEN": SECRET}}, "args.1"),
    ("executor", "salvar", "PedidoSalvar", {"registros": [{"a": 1}], "dataset": "d"},
     {"registros": {"a": SECRET}}, "registros"),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "nome", "schema", "good", "bad", "field"), CASES, ids=[c[1] for c in CASES])
def test_a_bad_payload_is_refused_naming_the_plugin_and_the_field_never_the_value(
    kind: str, nome: str, schema: str, good: dict[str, Any], bad: dict[str, Any], field: str
):
    plugin = registry.get(kind, nome)  # type: ignore[arg-type]
    assert plugin.schema is not None and plugin.schema.__name__ == schema
    assert payload_dict(payload_for(plugin, good)) == good  # the handler sees what was sent

    with pytest.raises(PermanentFailure) as info:
        payload_for(plugin, bad)
    message = str(info.value)
    assert message.startswith(f"invalid payload for {kind} {nome!r} ({schema}): {field!r}: "), message
    assert SECRET not in message and "errors.pydantic.dev" not in message


def test_comando_refuses_an_unknown_key_in_its_schema():
    plugin = registry.get("executor", "comando")
    with pytest.raises(PermanentFailure, match=r"'timout': Extra inputs are not permitted"):
        payload_for(plugin, {"programa": "wc", "timout": 5})


def test_a_direct_call_still_gets_the_plugins_own_checks():
    """Called as a function (a notebook, a test), a handler takes a dict and checks it itself."""
    from executores.salvar import salvar

    with pytest.raises(PermanentFailure, match="'registros' as a list of objects"):
        salvar({"registros": "nada"}, None)  # type: ignore[arg-type]


def test_orq_asyncapi_documents_the_payload_of_every_builtin_plugin(tmp_path: Path):
    """The built-ins come through their entry points, as on any installation."""
    env = {"ORQ_HOME": str(tmp_path / "h")}
    run = orq("asyncapi", "--broker", "nats://127.0.0.1:4222", "--format", "json", env=env)
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    schemas, messages = doc["components"]["schemas"], doc["components"]["messages"]
    for kind, nome, schema, good, *_ in CASES:
        assert set(good) <= set(schemas[schema]["properties"]), schema
        ref = f"#/components/schemas/{schema}"
        assert any(ref in json.dumps(m["payload"]) for m in messages.values()), f"no message carries {schema}"
        assert f"{kind}_{nome}" in doc["channels"]
    assert schemas["PedidoComando"]["additionalProperties"] is False  # unknown keys are refused
