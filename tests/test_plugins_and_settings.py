from __future__ import annotations

import uuid

import pytest

from orquestrador import PluginError, escavador, registry
from orquestrador.errors import ConfigError
from orquestrador.settings import check_url, redact_url


def test_a_name_taken_by_another_function_names_both_sources():
    nome = f"dup_{uuid.uuid4().hex[:8]}"

    @escavador(nome)
    def first(payload):  # type: ignore[no-untyped-def]
        return {}

    with pytest.raises(PluginError) as info:

        @escavador(nome)
        def second(payload):  # type: ignore[no-untyped-def]
            return {}

    assert "first" in str(info.value) and "second" in str(info.value)
    registry.unregister("escavador", nome)


def test_redefining_the_same_function_replaces_it_like_a_rerun_notebook_cell():
    nome = f"cell_{uuid.uuid4().hex[:8]}"

    def make(version: int):  # type: ignore[no-untyped-def]
        @escavador(nome)
        def handler(payload):  # type: ignore[no-untyped-def]
            return {"version": version}

        return handler

    make(1)
    make(2)
    assert registry.get("escavador", nome).handler({}) == {"version": 2}
    registry.unregister("escavador", nome)


def test_builtin_http_escavador_is_found_through_its_entry_point():
    plugin = registry.get("escavador", "http")
    assert plugin.fila == "escavador_http"
    assert plugin.is_async


def test_unknown_plugin_says_how_to_register_it():
    with pytest.raises(PluginError, match="orq worker --module"):
        registry.get("executor", "nao_existe")


@pytest.mark.parametrize("option", [{"concurrency": 0}, {"max_tentativas": 0}, {"timeout": -1}])
def test_bad_plugin_options_fail_at_declaration(option):  # type: ignore[no-untyped-def]
    with pytest.raises(PluginError):
        escavador(f"x_{uuid.uuid4().hex[:6]}", **option)


@pytest.mark.parametrize(
    "url", ["mqtt://127.0.0.1:1883", "nats://", "redis://host:notaport", "127.0.0.1:4222",
            "kafka://127.0.0.1:9092,127.0.0.1:nope"]
)
def test_unusable_broker_urls_are_refused_with_a_hint(url: str):
    with pytest.raises(ConfigError) as info:
        check_url(url)
    assert "\n" not in str(info.value)


def test_passwords_never_appear_in_redacted_urls():
    assert redact_url("amqp://guest:s3cr3t@127.0.0.1:5672/%2F") == "amqp://guest:***@127.0.0.1:5672/%2F"
    assert "tok" not in redact_url("nats://tok@127.0.0.1:4222")
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
