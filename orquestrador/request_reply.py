"""Request-reply over the work queues: launch one job and wait for its answer, or say why not.

Why on top of the jobs rather than a reply subject of its own: the job is recorded in the store
like any other, goes through the worker's retries and dead letters, and its answer is the
durable ``resultado_*`` the collector already records; a caller who stops waiting loses
nothing (``orq.job(message_id)`` finds it later). Waiting costs no broker round trip: the
collector wakes the waiter when the result is stored.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orquestrador import consumers
from orquestrador.errors import JobFailed, JobTimeout
from orquestrador.plugins import queue_for
from orquestrador.vocabulary import KIND_OF

if TYPE_CHECKING:
    from orquestrador.messaging import AsyncMessaging
    from orquestrador.vocabulary import TipoEvento


async def solicitar(
    core: AsyncMessaging,
    tipo: TipoEvento,
    alvo: str,
    payload: dict[str, Any],
    *,
    timeout: float,
    correlation_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The result of one new job, or :class:`JobTimeout` / :class:`JobFailed` saying why not."""
    if not timeout > 0:
        raise ValueError(f"timeout is seconds to wait for the result, above 0; got {timeout!r}")
    env = await core.iniciar(tipo, alvo, payload, correlation_id=correlation_id, headers=headers)
    message_id = env.message_id or ""
    try:
        row = await core.esperar(message_id, timeout)
    except TimeoutError:
        row = core.store.job(message_id)
        estado = row.estado if row is not None else "unknown"
        why = ""
        if estado == "queued":
            unserved = await consumers.check(core._broker(), queue_for(KIND_OF[tipo], alvo))
            why = f" {unserved}." if unserved else ""
        raise JobTimeout(
            f"no result from {alvo} after {timeout:g}s (job {message_id}, status {estado!r}).{why} "
            f"The job stays recorded and may still finish: orq.job({message_id!r}).wait()",
            message_id=message_id,
        ) from None
    if row is None:  # pruned by retention while we waited: the answer is gone with it
        raise JobFailed(f"job {message_id} ({alvo}) is no longer in the store", message_id=message_id,
                        estado="unknown", erro=None)  # fmt: skip
    if row.estado != "ok":
        erro = row.erro or {}
        what = f"{erro.get('tipo', 'erro')}: {erro.get('mensagem', '')}" if erro else row.estado
        raise JobFailed(
            f"{alvo} failed job {message_id} after {row.tentativa or 1} attempt(s) ({row.estado}): {what}",
            message_id=message_id, estado=row.estado, erro=row.erro,
        )  # fmt: skip
    return row.resultado or {}


__all__ = ["solicitar"]
