"""When and in what order a job runs: its priority, its earliest start and its deadline.

Every launch (one job or a batch, API, CLI, widget, a schedule's firing) takes the same five
keyword options, checked here once so each entry point says the same thing about bad input:

- ``prioridade``: 0 (the default) to 9, 9 the most urgent;
- ``atraso`` (seconds) or ``executar_em`` (an aware datetime): not started before then;
- ``ttl`` (seconds) or ``expira_em`` (an aware datetime): never started after then.

Relative options become absolute times at launch, so the wire carries only ``prioridade``,
``executar_em`` and ``expira_em`` (optional envelope fields, absent when unset: a job without
options is byte for byte what it was before).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypedDict

from orquestrador.errors import ConfigError

MAX_PRIORIDADE = 9
MAX_SECONDS = 366 * 24 * 3600.0  # a year: longer is a typo (milliseconds?) rather than a plan


class Timing(TypedDict, total=False):
    """The launch keywords, as every launching function takes them (``**timing``)."""

    prioridade: int | None
    atraso: float | None
    executar_em: datetime | None
    ttl: float | None
    expira_em: datetime | None


@dataclass(frozen=True, slots=True)
class JobOptions:
    """The checked options of one launch; :meth:`of` builds it from what a caller passed."""

    prioridade: int = 0
    executar_em: datetime | None = None
    expira_em: datetime | None = None

    @classmethod
    def of(
        cls,
        *,
        prioridade: int | None = None,
        atraso: float | None = None,
        executar_em: datetime | None = None,
        ttl: float | None = None,
        expira_em: datetime | None = None,
        now: datetime | None = None,
    ) -> JobOptions:
        """Check the options and turn ``atraso``/``ttl`` into times counted from ``now``.

        Raises :class:`ConfigError` naming the option and what to pass instead.
        """
        at = now or datetime.now(UTC)
        start = _when("atraso", atraso, "executar_em", executar_em, at)
        deadline = _when("ttl", ttl, "expira_em", expira_em, at)
        if deadline is not None and deadline <= (start or at):
            after = "executar_em/atraso" if start is not None else "now"
            raise ConfigError(
                f"expira_em/ttl ({deadline.isoformat()}) is not after {after}: the job could never "
                "run; give it a later deadline"
            )
        return cls(_priority(prioridade), start, deadline)

    @property
    def empty(self) -> bool:
        """No option set: the job is launched exactly as without options."""
        return not self.prioridade and self.executar_em is None and self.expira_em is None

    def fields(self) -> dict[str, Any]:
        """The envelope fields these options set (none for the defaults)."""
        out: dict[str, Any] = {}
        if self.prioridade:
            out["prioridade"] = self.prioridade
        if self.executar_em is not None:
            out["executar_em"] = self.executar_em
        if self.expira_em is not None:
            out["expira_em"] = self.expira_em
        return out


NO_OPTIONS = JobOptions()


def _priority(value: int | None) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_PRIORIDADE:
        raise ConfigError(
            f"prioridade must be a whole number from 0 to {MAX_PRIORIDADE} (9 the most urgent), got {value!r}"
        )
    return value


def _when(
    relative: str, seconds: float | None, absolute: str, moment: datetime | None, now: datetime
) -> datetime | None:
    if seconds is not None and moment is not None:
        raise ConfigError(f"give either {relative}= (seconds) or {absolute}= (a datetime), not both")
    if seconds is not None:
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not math.isfinite(seconds):
            raise ConfigError(f"{relative} must be a number of seconds, got {seconds!r}")
        if not 0 <= seconds <= MAX_SECONDS:
            raise ConfigError(f"{relative} must be from 0 to {MAX_SECONDS:.0f} seconds, got {seconds!r}")
        return now + timedelta(seconds=seconds)
    if moment is None:
        return None
    if not isinstance(moment, datetime):
        raise ConfigError(f"{absolute} must be a datetime, got {type(moment).__name__}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ConfigError(
            f"{absolute} is a naive datetime ({moment.isoformat()}): give it a time zone, e.g. "
            "datetime(..., tzinfo=timezone.utc) or datetime.now(ZoneInfo('America/Sao_Paulo'))"
        )
    return moment.astimezone(UTC)


__all__ = ["MAX_PRIORIDADE", "NO_OPTIONS", "JobOptions", "Timing"]
