"""Schedules: recurring jobs (``cada="1h"``, ``cron="0 6 * * *"``) kept on the broker.

:mod:`.model` is what a schedule is and when it fires (the missed-occurrence policy is there),
:mod:`.registry` where definitions and firings live (the broker's shared state), and
:mod:`.scheduler` the process that fires them (``orq worker agenda``).
"""

from orquestrador.agenda.model import Agenda, make, occurrence_id, parse_cada
from orquestrador.agenda.registry import Agendas, listing
from orquestrador.agenda.scheduler import Scheduler

__all__ = ["Agenda", "Agendas", "Scheduler", "listing", "make", "occurrence_id", "parse_cada"]
