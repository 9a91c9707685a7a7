"""Schedules from the facade: ``orq.agendar(...)``, ``orq.agendas()``, pause, resume, remove.

Definitions live on the broker (see :mod:`orquestrador.agenda`), so a schedule made here keeps
firing after this notebook closes, as long as an ``orq worker agenda`` runs somewhere.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orquestrador import agenda as agendas_
from orquestrador.agenda.model import Agenda
from orquestrador.facade.session import Session

if TYPE_CHECKING:
    import pandas as pd


class AgendaMethods(Session):
    """The schedule half of :class:`~orquestrador.Orquestrador`."""

    def _agendas(self) -> agendas_.Agendas:
        return agendas_.Agendas(self._core._broker().shared_state())

    def agendar(
        self,
        kind: str,
        alvo: str,
        payload: dict[str, Any],
        *,
        cada: str | float | None = None,
        cron: str | None = None,
        fuso: str = "UTC",
        perdidas: str = "uma",
        tolerancia: float = 60.0,
        id: str | None = None,
        prioridade: int | None = None,
        ttl: float | None = None,
    ) -> Agenda:
        """Launch ``alvo``'s job with ``payload`` every ``cada`` (``"30m"``, ``"1h"``, ``"1d"``) or
        at each ``cron`` time in zone ``fuso``; returns the schedule (its ``id`` names it).

        Results come back to this orchestrator's results queue, tagged with the id:
        ``resultados(agenda=id)``. A scheduler down for a while fires each occurrence at most
        ``tolerancia`` seconds late; older missed ones are fired once (``perdidas="uma"``) or
        skipped (``"nenhuma"``). Giving an existing ``id`` replaces that schedule.

        Each firing is launched with ``prioridade`` (0-9) and, with ``ttl``, expires unless it
        starts within ``ttl`` seconds of its occurrence: a firing that waited behind a backlog
        longer than its interval is dropped (dead-lettered ``expired``) rather than run late.
        """
        agenda = agendas_.make(
            kind, alvo, payload, responder_para=self._core.responder_para, cada=cada, cron=cron,
            fuso=fuso, perdidas=perdidas, tolerancia=tolerancia, id=id, prioridade=prioridade, ttl=ttl,
        )  # fmt: skip
        return self._run(self._agendas().save(agenda))

    def agendas(self) -> pd.DataFrame:
        """Every schedule on the broker: how it repeats, paused or not, last and next firing."""
        import pandas as pd

        rows = self._run(agendas_.listing(self._agendas()))
        frame = pd.DataFrame(rows, columns=list(_COLUMNS))
        for column in ("ultima", "proxima"):
            frame[column] = pd.to_datetime(frame[column], unit="s", utc=True)
        return frame

    def pausar_agenda(self, agenda_id: str) -> Agenda:
        """Stop firing until :meth:`retomar_agenda`; nothing due meanwhile is fired later."""
        return self._run(self._agendas().pause(agenda_id))

    def retomar_agenda(self, agenda_id: str) -> Agenda:
        return self._run(self._agendas().resume(agenda_id))

    def remover_agenda(self, agenda_id: str) -> None:
        """Delete the schedule; jobs it already fired and their results stay."""
        self._run(self._agendas().remove(agenda_id))


_COLUMNS = ("id", "tipo_evento", "alvo", "quando", "pausada", "perdidas", "prioridade", "ttl", "ultima",
            "proxima", "responder_para", "payload")  # fmt: skip
