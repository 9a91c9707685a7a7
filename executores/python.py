"""``python``: call an allow-listed Python function with the job's payload.

Payload::

    {"funcao": "meu_pacote.tarefas:somar", "args": {"a": 1, "b": 2}}

``funcao`` is ``"pkg.mod:func"`` or ``"pkg.mod.func"`` (one attribute of one module: no
``Classe.metodo``); ``args`` (optional) are keyword arguments. The function may be a plain
``def`` (run in a thread, so it never blocks the worker's event loop) or ``async def``.

Result: a dict returned by the function, as is; anything else wrapped as ``{"valor": ...}``.
The result must be JSON-serialisable (JSON types; datetimes, UUIDs and decimals become strings,
as on the wire); otherwise the job fails permanently, saying so.

**The allow-list.** A job names code to run, so only code the worker's operator listed may run:
``ORQ_PYTHON_ALLOW`` (comma-separated) plus whatever :func:`permitir` added in this process.
An entry is a module prefix (``meu_pacote`` allows ``meu_pacote.x:f`` and
``meu_pacote.x.y.f``) or an exact dotted path (``meu_pacote.tarefas.somar``). The check runs on
the *name*, before anything is imported, so a refused job never executes a module's top-level
code. After import it runs again on where the function is really defined
(``__module__.__qualname__``): ``meu_pacote.tarefas:system`` is refused when ``tarefas`` merely
did ``from os import system``. Names starting with ``_`` are never callable. Importing
``a.b.c`` also runs ``a/__init__.py`` and ``a/b/__init__.py``: listing a module trusts its
parent packages' import-time code too. A refusal is a ``PermanentFailure`` naming the setting.

Exceptions raised by the function go through the worker's normal path: ``Retry`` and
``PermanentFailure`` steer delivery, anything else is retried with backoff.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import os
import re
import threading
from collections.abc import Callable, Iterable
from typing import Any

import pydantic_core
from pydantic import Field

from orquestrador import Contexto, PermanentFailure, executor
from orquestrador.plugins import PayloadModel, payload_dict

ENV_ALLOW = "ORQ_PYTHON_ALLOW"

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_MODULE_RE = re.compile(rf"^{_IDENT}(\.{_IDENT})*$")
_ATTR_RE = re.compile(rf"^{_IDENT}$")

_permitidos: set[str] = set()
_lock = threading.Lock()


def permitir(*entradas: str) -> None:
    """Allow module prefixes or exact dotted paths in this process, besides ``ORQ_PYTHON_ALLOW``.

    For notebooks and embedding code that register what they trust in Python rather than in
    the environment of the worker process.
    """
    validas = [_check_entry(e) for e in entradas]
    with _lock:
        _permitidos.update(validas)


def revogar(*entradas: str) -> None:
    """Undo :func:`permitir` for these entries (the environment variable is not affected)."""
    with _lock:
        _permitidos.difference_update(entradas)


def permitidos() -> frozenset[str]:
    """Everything allowed right now: ``ORQ_PYTHON_ALLOW`` (read on every call) plus :func:`permitir`."""
    from_env = (e.strip() for e in os.environ.get(ENV_ALLOW, "").split(","))
    with _lock:
        return frozenset(e for e in from_env if e) | frozenset(_permitidos)


def _check_entry(entrada: str) -> str:
    entrada = entrada.strip()
    if not _MODULE_RE.match(entrada):
        raise ValueError(f"{entrada!r} is not a dotted module or function path, e.g. 'meu_pacote.tarefas'")
    return entrada


def _allowed(dotted: str, allow: Iterable[str]) -> bool:
    # "a.b" allows "a.b" and everything under it, never "a.bc".
    return any(dotted == entry or dotted.startswith(entry + ".") for entry in allow)


def _refused(what: str) -> PermanentFailure:
    return PermanentFailure(
        f"{what} is not allow-listed for the python executor: add its module (or exact dotted "
        f"path) to {ENV_ALLOW} in the worker's environment, or call "
        "executores.python.permitir(...) in the worker process"
    )


def _parse(funcao: Any) -> tuple[str, str]:
    """Split ``pkg.mod:func`` / ``pkg.mod.func`` into module and attribute, refusing anything else."""
    if not isinstance(funcao, str) or not funcao:
        raise PermanentFailure(f"payload needs 'funcao' as 'pkg.mod:func' or 'pkg.mod.func', got {funcao!r}")
    if ":" in funcao:
        modulo, _, nome = funcao.partition(":")
    else:
        modulo, _, nome = funcao.rpartition(".")
    if not _MODULE_RE.match(modulo) or not _ATTR_RE.match(nome):
        raise PermanentFailure(
            f"'funcao' {funcao!r} must be 'pkg.mod:func' or 'pkg.mod.func' (one function of one module)"
        )
    if nome.startswith("_"):
        raise PermanentFailure(f"'funcao' {funcao!r}: private names (starting with '_') are never callable")
    return modulo, nome


def _serialisable(valor: Any, funcao: str) -> Any:
    # Exactly what the result envelope will carry, so the caller sees what arrives.
    try:
        return json.loads(pydantic_core.to_json(valor))
    except (pydantic_core.PydanticSerializationError, ValueError, TypeError) as exc:
        raise PermanentFailure(
            f"{funcao} returned a {type(valor).__name__} that is not JSON-serialisable ({exc}); "
            "return dicts, lists, strings, numbers, booleans or None"
        ) from None


async def _resolve(funcao: Any) -> tuple[str, Callable[..., Any]]:
    modulo, nome = _parse(funcao)
    allow = permitidos()
    pedido = f"{modulo}.{nome}"
    if not _allowed(pedido, allow):
        raise _refused(f"{pedido!r}")
    try:
        # Module code may be slow to import; keep it off the worker's event loop.
        mod = await asyncio.to_thread(importlib.import_module, modulo)
    except ImportError as exc:
        raise PermanentFailure(f"cannot import module {modulo!r}: {exc}") from None
    alvo = getattr(mod, nome, None)
    if alvo is None or not callable(alvo):
        raise PermanentFailure(f"module {modulo!r} has no function {nome!r}")
    definida = f"{getattr(alvo, '__module__', None)}.{getattr(alvo, '__qualname__', None)}"
    if definida != pedido and not _allowed(definida, allow):
        raise _refused(f"{pedido!r} (defined as {definida!r})")
    return pedido, alvo


class PedidoPython(PayloadModel):
    """The ``python`` executor's payload (other fields are kept and ignored)."""

    funcao: str = Field(description="allow-listed function, 'pkg.mod:func' or 'pkg.mod.func'")
    args: dict[str, Any] | None = Field(default=None, description="keyword arguments of the call")


@executor("python", schema=PedidoPython)
async def executar_funcao(pedido: dict[str, Any] | PedidoPython, ctx: Contexto) -> dict[str, Any]:
    """Run the allow-listed function named by ``payload["funcao"]`` with ``payload["args"]``."""
    payload = payload_dict(pedido)
    pedido, fn = await _resolve(payload.get("funcao"))
    args = payload.get("args") or {}
    if not isinstance(args, dict):
        raise PermanentFailure(f"'args' must be an object of keyword arguments, got {type(args).__name__}")
    try:
        inspect.signature(fn).bind(**args)
    except TypeError as exc:
        raise PermanentFailure(f"{pedido} cannot be called with args {sorted(args)}: {exc}") from None
    except ValueError:
        pass  # no introspectable signature (some C functions): let the call itself decide
    # Argument names only: their values may be credentials.
    ctx.log.info("calling %s(%s)", pedido, ", ".join(sorted(args)))
    if inspect.iscoroutinefunction(fn):
        valor = await fn(**args)
    else:
        valor = await asyncio.to_thread(fn, **args)
        if inspect.isawaitable(valor):  # a plain def returning a coroutine
            valor = await valor
    valor = _serialisable(valor, pedido)
    return valor if isinstance(valor, dict) else {"valor": valor}
