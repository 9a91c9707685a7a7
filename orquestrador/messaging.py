"""Topics and request-reply on the asyncio core: ``publicar``, ``assinar``, ``solicitar``.

Why apart from :mod:`orquestrador.orchestrator`: these send no job to record (topics) or wait for
exactly one (request-reply, :mod:`orquestrador.request_reply`); the orchestrator mixes them in
and lends them its broker, its size limit and its list of subscriptions (cancelled on close).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orquestrador import request_reply
from orquestrador.errors import TopicError
from orquestrador.topics import TopicMessage, validate_topic
from orquestrador.topics.delivery import validate_durable_name
from orquestrador.topics.subscription import AsyncAssinatura, Callback, Subscribing

if TYPE_CHECKING:
    from orquestrador.brokers import Broker
    from orquestrador.envelope import Envelope
    from orquestrador.store import JobRow, Store
    from orquestrador.vocabulary import TipoEvento


def check_correlation_id(correlation_id: object) -> None:
    """What subscribers accept (:meth:`TopicMessage.decode`), refused before publishing."""
    if correlation_id is not None and (not isinstance(correlation_id, str) or len(correlation_id) > 200):
        raise TopicError(f"correlation_id is a string of at most 200 characters, not {correlation_id!r:.60}")


class AsyncMessaging:
    """The topics and request-reply half of :class:`~orquestrador.AsyncOrquestrador`."""

    max_message_bytes: int
    store: Store
    _subscriptions: set[AsyncAssinatura]

    # What the orchestrator provides (these stubs only give them their types).
    def _broker(self) -> Broker:
        raise NotImplementedError

    async def iniciar(
        self, tipo: TipoEvento, alvo: str, payload: dict[str, Any], *, correlation_id: str | None = None,
        causation_id: str | None = None, headers: dict[str, str] | None = None, pipeline: str | None = None,
    ) -> Envelope:  # fmt: skip
        raise NotImplementedError

    async def esperar(self, message_id: str, timeout: float | None = None) -> JobRow | None:
        raise NotImplementedError

    async def solicitar(
        self,
        alvo: str,
        payload: dict[str, Any],
        *,
        timeout: float = 30.0,
        execucao: bool = False,
        correlation_id: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Launch one coleta (an execucao with ``execucao=True``) and return its result dict.

        Raises :class:`JobTimeout` after ``timeout`` seconds (the job stays recorded and may
        still finish) and :class:`JobFailed` with the worker's ``erro`` when it failed.
        """
        tipo: TipoEvento = "iniciar_execucao" if execucao else "iniciar_coleta"
        return await request_reply.solicitar(
            self, tipo, alvo, payload, timeout=timeout, correlation_id=correlation_id, headers=headers
        )

    # -- topics ----------------------------------------------------------------------------

    async def publicar(
        self,
        topico: str,
        dados: Any = None,
        *,
        headers: dict[str, str] | None = None,
        correlation_id: str | None = None,
    ) -> TopicMessage:
        """Publish ``dados`` (any JSON value) on ``topico`` for its subscribers; returns the message."""
        check_correlation_id(correlation_id)
        if headers is not None and not isinstance(headers, dict):
            raise TopicError(f"headers are a dict of str to str, not {type(headers).__name__}")
        message = TopicMessage(validate_topic(topico), dados, headers=dict(headers or {}),
                               correlation_id=correlation_id)  # fmt: skip
        await self._broker().publish_topic(message.topico, message.encode(max_bytes=self.max_message_bytes))
        return message

    def assinar(
        self, padrao: str, callback: Callback | None = None, *, duravel: str | None = None
    ) -> Subscribing:
        """Subscribe to the topics ``padrao`` matches (``*`` one token, ``>`` the rest).

        ``callback(message)`` (plain or ``async def``) runs on this loop for each message and
        must not block it; without one, the subscription is an async iterator. ``duravel``
        names a durable subscription where the broker offers them. Await the result, or use it
        in ``async with`` to cancel at the end of the block.
        """
        subscription = AsyncAssinatura(padrao, callback, duravel=duravel, max_bytes=self.max_message_bytes)

        async def start() -> AsyncAssinatura:
            await subscription.start(self._broker(), self._subscriptions.discard)
            self._subscriptions.add(subscription)
            return subscription

        return Subscribing(start)

    async def apagar_assinatura(self, duravel: str) -> None:
        """Forget the durable subscription ``duravel`` and what waits for it on the broker."""
        await self._broker().delete_subscription(validate_durable_name(duravel))
