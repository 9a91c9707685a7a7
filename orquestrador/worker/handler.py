"""Calling a plugin's handler: its payload checked, async or in a thread, parts as they come.

A handler may be ``async def``, a plain function (run in the worker's thread pool, with the
job's log fields), or a generator of either kind whose parts are published as they come. What
it returns becomes the result's payload; what it raises is the runtime's to settle.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import traceback
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from orquestrador.envelope import Erro
from orquestrador.errors import PermanentFailure
from orquestrador.logs import redact
from orquestrador.plugins import Plugin

TRACEBACK_CHARS = 4000  # the end of a failed handler's traceback travels in its erro

if TYPE_CHECKING:
    from pydantic import ValidationError

OnPart = Callable[[dict[str, Any], int], Awaitable[None]]  # (part, its number from 1)


def payload_for(plugin: Plugin, payload: dict[str, Any]) -> Any:
    """The payload as the handler takes it: its ``schema`` model, if it declares one."""
    if plugin.schema is None:
        return payload
    from pydantic import ValidationError  # loaded already by the schema: a worker without one never needs it

    try:
        return plugin.schema.model_validate(payload)
    except ValidationError as exc:
        problems = validation_problems(exc, payload)
        raise PermanentFailure(
            f"invalid payload for {plugin.kind} {plugin.nome!r} ({plugin.schema.__name__}): {problems}"
        ) from None


def validation_problems(exc: ValidationError, payload: Any) -> str:
    """One short line per field of ``payload`` that the schema refused, never its value.

    pydantic names each member of a union it tried (``headers.k.str``, ``headers.k.int``…):
    those collapse into the field's path as the payload has it, with the first reason.
    """
    found: dict[str, list[str]] = {}
    for error in exc.errors(include_url=False, include_input=False):
        node, path = payload, []
        for part in error["loc"]:
            if not _holds(node, part):
                if error["type"] == "missing":
                    path.append(str(part))
                break
            node = node[part]
            path.append(str(part))
        found.setdefault(".".join(path) or "payload", []).append(error["msg"])
    return "; ".join(
        f"{where!r}: {reasons[0]}" + (" (nor any other type it accepts)" if len(reasons) > 1 else "")
        for where, reasons in found.items()
    )


def _holds(node: Any, part: str | int) -> bool:
    if isinstance(node, dict):
        return part in node
    return isinstance(node, list) and isinstance(part, int) and -len(node) <= part < len(node)


async def invoke(
    plugin: Plugin, args: tuple[Any, ...], pool: ThreadPoolExecutor, timeout: float | None, on_part: OnPart
) -> dict[str, Any]:
    """Run the handler to its result (``{"partes": n}`` for a generator), within ``timeout``."""
    handler = plugin.handler
    call: Awaitable[Any]
    if inspect.isasyncgenfunction(handler) or inspect.isgeneratorfunction(handler):
        call = _parts(handler(*args), pool, on_part)
    elif plugin.is_async:
        call = handler(*args)
    else:
        # copy_context: the thread sees the job's log fields (run_in_executor does not pass them).
        run = contextvars.copy_context().run
        call = asyncio.get_running_loop().run_in_executor(pool, functools.partial(run, handler, *args))
    result = await (call if timeout is None else asyncio.wait_for(call, timeout=timeout))
    return as_dict(result)


async def _parts(parts: Any, pool: ThreadPoolExecutor, on_part: OnPart) -> dict[str, Any]:
    """Publish each yielded part durably as it comes; the final result summarises them."""
    count = 0
    if inspect.isasyncgen(parts):
        async for part in parts:
            count += 1
            await on_part(as_dict(part), count)
    else:
        loop = asyncio.get_running_loop()
        done = object()
        step = functools.partial(contextvars.copy_context().run, next, parts, done)
        while (part := await loop.run_in_executor(pool, step)) is not done:
            count += 1
            await on_part(as_dict(part), count)
    return {"partes": count}


def as_dict(result: Any) -> dict[str, Any]:
    if result is None:
        return {}
    if isinstance(result, dict):
        return result
    if hasattr(result, "model_dump"):  # a pydantic model
        return result.model_dump(mode="json")  # type: ignore[no-any-return]
    return {"valor": result}


def erro_of(exc: BaseException, **extra: Any) -> Erro:
    """Why a job failed, as its ``resultado_*`` and the widgets show it (traceback included)."""
    if exc.__traceback__ is not None:  # the remote traceback, for job.erro and the widgets
        text = "".join(traceback.format_exception(exc))
        extra.setdefault("traceback", redact(text[-TRACEBACK_CHARS:]))
    if isinstance(exc, TimeoutError) and not str(exc):
        return Erro(tipo="TimeoutError", mensagem="handler timed out", **extra)
    return Erro(tipo=type(exc).__name__, mensagem=str(exc)[:2000] or type(exc).__name__, **extra)
