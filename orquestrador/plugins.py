"""Escavadores and executores: named handlers the workers run.

A notebook or local module registers with a decorator; an installed package registers through
the entry-point groups ``orquestrador.escavadores`` / ``orquestrador.executores``, loaded lazily
the first time a name is looked up. Re-running a notebook cell replaces its own plugin; a
*different* function claiming a taken name is an error naming both sources.

pydantic is imported only by plugins that declare a ``schema=`` (and by ``PayloadModel``): a
worker whose plugins take plain dicts never loads it, 8.8 MiB less in each process.
"""

from __future__ import annotations

import inspect
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from orquestrador.errors import PermanentFailure, PluginError
from orquestrador.vocabulary import KINDS, PEDIDO_DE, Kind

ENTRY_POINT_GROUPS: dict[str, str] = {
    "escavador": "orquestrador.escavadores",
    "executor": "orquestrador.executores",
}

if TYPE_CHECKING:
    from pydantic import BaseModel

    class PayloadModel(BaseModel):  # what type checkers see; made by __getattr__ below
        pass


F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Plugin:
    """A registered handler and the options its workers run it with."""

    kind: Kind
    nome: str
    handler: Callable[..., Any]
    origem: str
    concurrency: int | None = None
    timeout: float | None = None
    max_tentativas: int | None = None
    schema: type[BaseModel] | None = None
    takes_context: bool = field(default=False)
    rate_limit: float | None = None  # jobs per second per rate key (per domain for escavadores)
    rate_key: Callable[[dict[str, Any]], str | None] | None = None

    @property
    def fila(self) -> str:
        return queue_for(self.kind, self.nome)

    @property
    def tipo_evento(self) -> str:
        return PEDIDO_DE[self.kind]

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.handler) or inspect.isasyncgenfunction(self.handler)


def domain_of(payload: dict[str, Any]) -> str | None:
    """The default rate key: the host of ``payload["url"]``, so each site is limited on its own."""
    url = payload.get("url")
    if not isinstance(url, str):
        return None
    host = urlsplit(url).hostname
    return host.lower() if host else None


def __getattr__(name: str) -> Any:
    """``PayloadModel``, made on first use: defining a pydantic model imports pydantic."""
    if name != "PayloadModel":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from pydantic import BaseModel, ConfigDict

    class PayloadModel(BaseModel):
        """A base for a plugin's ``schema=``: strict JSON types, other fields kept, and input never
        repeated in a validation error (a payload may carry credentials, and errors are logged)."""

        model_config = ConfigDict(extra="allow", strict=True, hide_input_in_errors=True)

    PayloadModel.__module__, PayloadModel.__qualname__ = __name__, "PayloadModel"
    globals()["PayloadModel"] = PayloadModel
    return PayloadModel


def payload_dict(payload: object) -> dict[str, Any]:
    """The payload as a dict, whether a worker validated it into the plugin's ``schema`` model or
    a direct call passed a dict: only the fields the sender set are kept, so the handler's own
    defaults and ceilings apply as for a dict. Anything else is a ``PermanentFailure``.
    """
    # A model means pydantic is loaded already: a worker without schemas never imports it here.
    if "pydantic" in sys.modules and isinstance(payload, sys.modules["pydantic"].BaseModel):
        return payload.model_dump(exclude_unset=True)  # type: ignore[no-any-return]
    if not isinstance(payload, dict):
        raise PermanentFailure(f"the payload must be a JSON object, got {type(payload).__name__}")
    return payload


def queue_for(kind: str, nome: str) -> str:
    if kind not in KINDS:
        raise PluginError(f"unknown plugin kind {kind!r}: use 'escavador' or 'executor'")
    return f"{kind}_{nome}"


def _origin(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', repr(fn))}"


def _takes_context(fn: Callable[..., Any]) -> bool:
    try:
        params = [
            p
            for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        return False
    return len(params) >= 2


class Registry:
    """Plugins by (kind, name). One per process, like Dramatiq's actor registry."""

    def __init__(self) -> None:
        self._plugins: dict[tuple[str, str], Plugin] = {}
        self._loaded_entry_points: set[str] = set()
        self._lock = threading.Lock()

    def register(self, plugin: Plugin) -> Plugin:
        key = (plugin.kind, plugin.nome)
        with self._lock:
            existing = self._plugins.get(key)
            if existing is not None and existing.origem != plugin.origem:
                raise PluginError(
                    f"{plugin.kind} {plugin.nome!r} is registered twice: by {existing.origem} "
                    f"and by {plugin.origem}; rename one of them"
                )
            self._plugins[key] = plugin
        return plugin

    def get(self, kind: Kind, nome: str) -> Plugin:
        queue_for(kind, nome)  # validates kind
        plugin = self._plugins.get((kind, nome))
        if plugin is None:
            self.load_entry_points(kind)
            plugin = self._plugins.get((kind, nome))
        if plugin is None:
            known = ", ".join(sorted(n for k, n in self._plugins if k == kind)) or "none"
            raise PluginError(
                f"no {kind} named {nome!r} (registered: {known}); import the module that "
                "defines it (orq worker --module M) or install its package"
            )
        return plugin

    def all(self) -> list[Plugin]:
        for kind in KINDS:
            self.load_entry_points(kind)
        return sorted(self._plugins.values(), key=lambda p: (p.kind, p.nome))

    def load_entry_points(self, kind: Kind) -> None:
        group = ENTRY_POINT_GROUPS[kind]
        for ep in metadata.entry_points(group=group):
            marker = f"{group}:{ep.name}"
            if marker in self._loaded_entry_points:
                continue
            self._loaded_entry_points.add(marker)
            try:
                target = ep.load()
            except Exception as exc:
                raise PluginError(f"entry point {ep.name!r} ({ep.value}) failed to load: {exc}") from exc
            if (kind, ep.name) not in self._plugins:
                self.register(
                    Plugin(kind, ep.name, target, f"entry point {ep.value}",
                           takes_context=_takes_context(target))
                )  # fmt: skip

    def unregister(self, kind: Kind, nome: str) -> None:
        with self._lock:
            self._plugins.pop((kind, nome), None)


registry = Registry()


def _decorator(
    kind: Kind,
    nome: str,
    *,
    concurrency: int | None,
    timeout: float | None,
    max_tentativas: int | None,
    schema: type[BaseModel] | None,
    rate_limit: float | None = None,
    rate_key: Callable[[dict[str, Any]], str | None] | None = None,
) -> Callable[[F], F]:
    queue_for(kind, nome)
    from orquestrador.brokers.base import validate_queue_name

    validate_queue_name(queue_for(kind, nome))
    if concurrency is not None and concurrency < 1:
        raise PluginError(f"{kind} {nome!r}: concurrency must be >= 1, got {concurrency}")
    if max_tentativas is not None and max_tentativas < 1:
        raise PluginError(f"{kind} {nome!r}: max_tentativas must be >= 1, got {max_tentativas}")
    if timeout is not None and timeout <= 0:
        raise PluginError(f"{kind} {nome!r}: timeout must be > 0 seconds, got {timeout}")
    if rate_limit is not None and rate_limit <= 0:
        raise PluginError(f"{kind} {nome!r}: rate_limit must be > 0 jobs per second, got {rate_limit}")

    def wrap(fn: F) -> F:
        registry.register(
            Plugin(kind, nome, fn, _origin(fn), concurrency, timeout, max_tentativas, schema,
                   takes_context=_takes_context(fn), rate_limit=rate_limit,
                   rate_key=rate_key or (domain_of if rate_limit and kind == "escavador" else None))
        )  # fmt: skip
        return fn

    return wrap


def escavador(
    nome: str,
    *,
    concurrency: int | None = None,
    timeout: float | None = None,
    max_tentativas: int | None = None,
    schema: type[BaseModel] | None = None,
    rate_limit: float | None = None,
    rate_key: Callable[[dict[str, Any]], str | None] | None = None,
) -> Callable[[F], F]:
    """Register a scraper: ``fn(payload)`` or ``fn(payload, ctx)``, sync or async, -> dict.

    ``rate_limit`` (jobs per second) is per domain of ``payload["url"]`` unless ``rate_key``
    says otherwise, and is shared by every worker where the broker holds shared state.
    """
    return _decorator("escavador", nome, concurrency=concurrency, timeout=timeout,
                      max_tentativas=max_tentativas, schema=schema, rate_limit=rate_limit,
                      rate_key=rate_key)  # fmt: skip


def executor(
    nome: str,
    *,
    concurrency: int | None = None,
    timeout: float | None = None,
    max_tentativas: int | None = None,
    schema: type[BaseModel] | None = None,
    rate_limit: float | None = None,
    rate_key: Callable[[dict[str, Any]], str | None] | None = None,
) -> Callable[[F], F]:
    """Register an executor: ``fn(payload)`` or ``fn(payload, ctx)``, sync or async, -> dict."""
    return _decorator("executor", nome, concurrency=concurrency, timeout=timeout,
                      max_tentativas=max_tentativas, schema=schema, rate_limit=rate_limit,
                      rate_key=rate_key)  # fmt: skip
