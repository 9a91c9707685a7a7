"""What a schedule is, how its definition is checked, and when it fires next.

Cron expressions go through ``cronsim`` (Healthchecks.io's parser), which walks wall-clock time
in the schedule's zone through DST changes as cron does: a time skipped by spring-forward fires
right after the change, a time repeated by fall-back fires once. Zones are IANA names read by the
standard ``zoneinfo`` (with the ``tzdata`` package where the system has no zone files). An
interval (``cada``) is a fixed number of seconds counted from when the schedule was made,
whatever the zone.

Missed occurrences (the scheduler was down, paused by the OS, or handing over to another one):
every occurrence at most ``tolerancia`` seconds late is fired, each once; older ones follow
``perdidas``: ``"uma"`` (the default) fires the latest of them once, ``"nenhuma"`` skips them.

Each firing is a normal launch with the schedule's ``prioridade`` and, when set, a deadline
``ttl`` seconds after its occurrence (not after it was published): a firing published late, by
a catch-up or a busy scheduler, still expires when its occurrence is ``ttl`` old.
"""

from __future__ import annotations

import json
import math
import re
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from orquestrador.errors import ConfigError, ScheduleError
from orquestrador.job_options import JobOptions
from orquestrador.vocabulary import KINDS, PEDIDO_DE

Perdidas = Literal["uma", "nenhuma"]
PERDIDAS: tuple[str, ...] = ("uma", "nenhuma")
DEFAULT_FUSO = "UTC"
DEFAULT_TOLERANCIA = 60.0
MAX_BURST = 1000  # occurrences fired in one go at most (a 1 s schedule late by the tolerance: 60)

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_CADA = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")


def parse_cada(cada: str | float | int) -> float:
    """``"10s"``, ``"30m"``, ``"1h"``, ``"1d"``, ``"1h30m"`` or seconds, as seconds (at least 1)."""
    if isinstance(cada, bool):
        raise ScheduleError(f"cada must be an interval such as '30m' or a number of seconds, got {cada!r}")
    if isinstance(cada, int | float):
        seconds = float(cada)
    elif isinstance(cada, str):
        text = cada.strip().lower().replace(" ", "")
        parts = _CADA.findall(text)
        if not text or "".join(n + u for n, u in parts) != text:
            raise ScheduleError(
                f"cada={cada!r} is not an interval: write a number and a unit, e.g. '10s', '30m', "
                "'1h', '1d' or '1h30m' (units s, m, h, d, w)"
            )
        seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    else:
        raise ScheduleError(f"cada must be an interval such as '30m' or a number of seconds, got {cada!r}")
    if not math.isfinite(seconds) or seconds < 1:
        raise ScheduleError(f"cada={cada!r} is shorter than the shortest interval, 1 second")
    return seconds


def zone(fuso: str) -> ZoneInfo:
    """The IANA zone ``fuso`` (e.g. ``America/Sao_Paulo``), or a ScheduleError naming it."""
    try:
        return ZoneInfo(fuso)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise ScheduleError(
            f"fuso={fuso!r} is not a known time zone: use an IANA name such as 'America/Sao_Paulo' "
            "or 'UTC' (pip install tzdata where the system has no zone files)"
        ) from exc


def check_cron(cron: str) -> str:
    problem = "it is not text"
    if isinstance(cron, str):
        try:
            CronSim(cron, datetime.now(UTC))
            return cron
        except CronSimError as exc:
            problem = str(exc).lower()
    raise ScheduleError(
        f"cron={cron!r} is not a cron expression ({problem}): five fields, minute hour day month "
        "weekday, e.g. '0 6 * * *' for every day at 06:00"
    )


@dataclass(frozen=True)
class Agenda:
    """A durable schedule: launch ``tipo_evento`` for ``alvo`` with ``payload`` at each occurrence.

    ``desde`` is the epoch after which occurrences count (when it was made or last resumed), so
    a resumed schedule does not fire what fell due while it was paused.
    """

    id: str
    tipo_evento: str
    alvo: str
    payload: dict[str, Any]
    responder_para: str
    cada: float | None = None
    cron: str | None = None
    fuso: str = DEFAULT_FUSO
    perdidas: Perdidas = "uma"
    tolerancia: float = DEFAULT_TOLERANCIA
    pausada: bool = False
    # Launch options of every firing; absent from definitions older than them (they load as 0/None).
    prioridade: int = 0
    ttl: float | None = None
    criada_em: float = field(default_factory=time.time)
    desde: float = field(default_factory=time.time)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Agenda:
        fields = json.loads(data)
        return cls(**{k: v for k, v in fields.items() if k in cls.__dataclass_fields__})

    def with_changes(self, **changes: Any) -> Agenda:
        return replace(self, **changes)

    @property
    def quando(self) -> str:
        """How it repeats, as people write it: ``cada 30m`` or ``cron 0 6 * * * America/Sao_Paulo``."""
        if self.cron is not None:
            return f"cron {self.cron} {self.fuso}"
        return f"cada {_human(self.cada or 0)}"

    def options(self, occurrence: float) -> JobOptions:
        """The launch options of the firing of ``occurrence``: its deadline counts from it."""
        return JobOptions.of(
            prioridade=self.prioridade, ttl=self.ttl, now=datetime.fromtimestamp(occurrence, UTC)
        )

    def next_after(self, epoch: float) -> float:
        """The first occurrence strictly after ``epoch``."""
        if self.cada is not None:
            steps = math.floor((epoch - self.criada_em) / self.cada) + 1
            return self.criada_em + max(steps, 1) * self.cada
        return next(CronSim(self.cron or "", datetime.fromtimestamp(epoch, zone(self.fuso)))).timestamp()

    def prev_before(self, epoch: float) -> float:
        """The last occurrence strictly before ``epoch``."""
        if self.cada is not None:
            steps = math.ceil((epoch - self.criada_em) / self.cada) - 1
            return self.criada_em + steps * self.cada
        start = datetime.fromtimestamp(epoch, zone(self.fuso))
        return next(CronSim(self.cron or "", start, reverse=True)).timestamp()

    def due(self, last: float, now: float) -> list[float]:
        """Occurrences to fire now, given the last one fired (or ``desde``), by the missed policy."""
        start = max(last, self.desde)
        t = self.next_after(start)
        fire: list[float] = []
        recent_from = now - self.tolerancia
        if t < recent_from:  # some are older than the tolerance: the policy decides
            late = min(self.prev_before(recent_from), now)
            if self.perdidas == "uma":
                fire.append(late)
            t = self.next_after(late)
        while t <= now and len(fire) < MAX_BURST:
            fire.append(t)
            t = self.next_after(t)
        return fire


def occurrence_id(agenda_id: str, occurrence: float) -> str:
    """The message_id of one firing: the same for whoever fires it, so the broker's dedup (and
    the store) see a double fire as one job."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"orq:agenda:{agenda_id}/{occurrence:.3f}"))


def make(
    kind: str,
    alvo: str,
    payload: dict[str, Any],
    *,
    responder_para: str,
    cada: str | float | None = None,
    cron: str | None = None,
    fuso: str = DEFAULT_FUSO,
    perdidas: str = "uma",
    tolerancia: float = DEFAULT_TOLERANCIA,
    id: str | None = None,
    prioridade: int | None = None,
    ttl: float | None = None,
) -> Agenda:
    """A checked schedule: exactly one of ``cada``/``cron``, a known zone, a JSON payload, and
    launch options each firing can carry."""
    if kind not in KINDS:
        raise ScheduleError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if not isinstance(alvo, str) or not alvo:
        raise ScheduleError("alvo must name an escavador or executor, e.g. 'http'")
    if not isinstance(payload, dict):
        raise ScheduleError(f"payload must be a dict (JSON object), got {type(payload).__name__}")
    try:
        json.dumps(payload)
    except (TypeError, ValueError) as exc:
        raise ScheduleError(f"payload must be JSON: {exc}") from exc
    if (cada is None) == (cron is None):
        raise ScheduleError("give exactly one of cada= (e.g. '1h') or cron= (e.g. '0 6 * * *')")
    zone(fuso)
    if perdidas not in PERDIDAS:
        raise ScheduleError(f"perdidas must be 'uma' (catch up once) or 'nenhuma' (skip), got {perdidas!r}")
    if not isinstance(tolerancia, int | float) or tolerancia < 0:
        raise ScheduleError(f"tolerancia must be a number of seconds >= 0, got {tolerancia!r}")
    if id is not None and not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,63}", id):
        raise ScheduleError(f"id={id!r}: use lowercase letters, digits, '_' and '-' (up to 64)")
    if ttl is not None and ttl <= 0:  # a firing would expire at its own occurrence
        raise ScheduleError(f"ttl must be more than 0 seconds (or None: firings never expire), got {ttl!r}")
    try:
        options = JobOptions.of(prioridade=prioridade, ttl=ttl)
    except ConfigError as exc:
        raise ScheduleError(str(exc)) from None
    now = time.time()
    return Agenda(
        id=id or uuid.uuid4().hex[:12],
        tipo_evento=PEDIDO_DE[kind],
        alvo=alvo,
        payload=payload,
        responder_para=responder_para,
        cada=parse_cada(cada) if cada is not None else None,
        cron=check_cron(cron) if cron is not None else None,
        fuso=fuso,
        perdidas=perdidas,  # type: ignore[arg-type]  # checked above
        tolerancia=float(tolerancia),
        prioridade=options.prioridade,
        ttl=None if ttl is None else float(ttl),
        criada_em=now,
        desde=now,
    )


def _human(seconds: float) -> str:
    for unit in ("w", "d", "h", "m"):
        size = _UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")
