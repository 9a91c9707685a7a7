"""Topics and request-reply for scripts and notebooks: ``publicar``, ``assinar``, ``solicitar``.

Why apart from launching: these calls send no job to track (topics) or wait for exactly one
(request-reply); a subscription is a handle that lives on the core's loop thread, so callbacks
run there and may update widgets without locks.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Self

from orquestrador.facade.session import Session
from orquestrador.topics import TopicMessage
from orquestrador.topics.subscription import AsyncAssinatura, Callback


class Assinatura:
    """A subscription held by the synchronous facade: ``cancelar()`` (or ``with``) ends it.

    Without a callback it is iterable (``for msg in sub``, blocking until the next message;
    ``sub.receber(timeout)`` waits at most ``timeout`` seconds).
    """

    def __init__(self, session: Session, subscription: AsyncAssinatura) -> None:
        self._session = session
        self._async = subscription

    @property
    def padrao(self) -> str:
        return self._async.padrao

    @property
    def duravel(self) -> str | None:
        return self._async.duravel

    @property
    def ativa(self) -> bool:
        return self._async.ativa and not self._session.closed

    @property
    def recebidas(self) -> int:
        return self._async.recebidas

    def receber(self, timeout: float | None = None) -> TopicMessage | None:
        """The next message; None once cancelled, or after ``timeout`` seconds without one."""
        if self._session.closed:
            return None
        return self._session._run(self._async.receber(timeout))

    def __iter__(self) -> Iterator[TopicMessage]:
        if self._async._callback is not None:
            raise TypeError("this subscription calls its callback; subscribe without one to iterate")
        return self._messages()

    def _messages(self) -> Iterator[TopicMessage]:
        while (message := self.receber()) is not None:
            yield message

    def cancelar(self) -> None:
        """Stop receiving; safe to call twice, and after the Orquestrador closed."""
        if not self._session.closed:
            self._session._run(self._async.cancelar())

    close = cancelar

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if not self._session.closed:
            self._session._run(self._async.__aexit__(exc_type, exc, tb))

    def __repr__(self) -> str:
        return repr(self._async).replace("AsyncAssinatura", "Assinatura", 1)


class Messaging(Session):
    """The topics and request-reply half of :class:`~orquestrador.Orquestrador`."""

    def publicar(
        self,
        topico: str,
        dados: Any = None,
        headers: dict[str, str] | None = None,
        correlation_id: str | None = None,
    ) -> TopicMessage:
        """Publish ``dados`` (any JSON value) on ``topico`` (e.g. ``orders.created``); returns the
        message sent (its ``message_id`` and ``timestamp``). Raises :class:`TopicError` for a bad
        topic or headers."""
        return self._run(self._core.publicar(topico, dados, headers=headers, correlation_id=correlation_id))

    def assinar(
        self, padrao: str, callback: Callback | None = None, duravel: str | None = None
    ) -> Assinatura:
        """Call ``callback(message)`` for each message on a topic ``padrao`` matches (``*`` one
        token, ``>`` the rest, e.g. ``orq.resultado_coleta.*``); returns the handle to cancel.

        The callback runs on the Orquestrador's loop thread (in Jupyter: safe to update widgets)
        and must return quickly. Live by default (only what is published while subscribed);
        ``duravel="name"`` catches up on what was published while away, where the broker has
        durable subscriptions. Subscribed when it returns.
        """
        subscription = self._run(self._core.assinar(padrao, callback, duravel=duravel).__aenter__())
        return Assinatura(self, subscription)

    def apagar_assinatura(self, duravel: str) -> None:
        """Forget the durable subscription ``duravel``: what waits for it on the broker is
        dropped, and nothing more is kept for that name until it subscribes again."""
        self._run(self._core.apagar_assinatura(duravel))

    def solicitar(
        self,
        alvo: str,
        payload: dict[str, Any],
        timeout: float = 30.0,
        *,
        execucao: bool = False,
        correlation_id: str | None = None,
    ) -> dict[str, Any]:
        """Run one coleta (an execucao with ``execucao=True``) and return its result dict.

        Raises :class:`JobTimeout` after ``timeout`` seconds (the job stays recorded and may
        still finish: ``orq.job(exc.message_id)``) and :class:`JobFailed` with the worker's
        ``erro`` when it failed.
        """
        return self._run(
            self._core.solicitar(
                alvo, payload, timeout=timeout, execucao=execucao, correlation_id=correlation_id
            )
        )


__all__ = ["Assinatura", "Messaging"]
