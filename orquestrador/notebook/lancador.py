"""The painel's launch form: pick a plugin, edit a payload, launch one job or a batch, or
make a schedule that launches it again and again.

Why a form of its own: every payload is checked (JSON, then the plugin's pydantic schema) before
any job leaves, so a typo in row 900 of a DataFrame does not launch 899 jobs and fail the rest.
A schedule's interval, cron and zone are checked the same way, as ``orq.agendar`` checks them,
before it is saved.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import ipywidgets as w
from pydantic import ValidationError

from orquestrador import agenda as agendas_
from orquestrador.agenda.model import DEFAULT_FUSO, Agenda, iso
from orquestrador.errors import ConfigError, OrquestradorError
from orquestrador.job_options import MAX_SECONDS, JobOptions, Timing
from orquestrador.notebook._live import esc
from orquestrador.notebook.jobs import lote_widget
from orquestrador.plugins import Plugin

if TYPE_CHECKING:
    import pandas as pd

    from orquestrador.facade import Lote, Orquestrador


class PayloadError(OrquestradorError, ValueError):
    """A payload the form refuses to launch; its message is shown in the form."""


# How the form launches: now, or as a schedule every interval or at each cron time.
REPETIR = [("once, now", "agora"), ("every … (cada)", "cada"), ("at cron times", "cron")]


class Lancador:
    """The launch form. ``dados`` offers its columns as a source of one payload per row."""

    def __init__(self, orq: Orquestrador, plugins: list[Plugin], dados: pd.DataFrame | None = None) -> None:
        self.orq = orq
        self.plugins = plugins
        self.dados = dados
        options = [(f"{p.kind} {p.nome}", i) for i, p in enumerate(plugins)]
        self.alvo = w.Dropdown(options=options, description="alvo")
        # Checked when the editor loses focus (not on every keystroke): see check().
        self.payload = w.Textarea(
            value="{}", description="payload", layout=w.Layout(width="60%"), continuous_update=False
        )
        # Values are column positions (-1: the editor's payload): a column may be named anything.
        columns = (
            [] if dados is None else [(f"one job per row of {c!s}", i) for i, c in enumerate(dados.columns)]
        )
        self.fonte = w.Dropdown(
            options=[("the payload, N copies", -1), *columns], value=-1, description="launch"
        )
        self.copias = w.BoundedIntText(value=1, min=1, max=1_000_000, description="copies")
        self.copias.add_class("orq-copias")
        # When and in what order (orquestrador.job_options); 0 seconds: no delay, no deadline.
        self.prioridade = w.BoundedIntText(value=0, min=0, max=9, description="prioridade")
        self.atraso = w.BoundedFloatText(value=0.0, min=0.0, max=MAX_SECONDS, description="atraso (s)")
        self.ttl = w.BoundedFloatText(value=0.0, min=0.0, max=MAX_SECONDS, description="ttl (s)")
        # A schedule instead of a launch now: its firings take prioridade and ttl (per firing).
        self.repetir = w.Dropdown(options=REPETIR, value="agora", description="repeat")
        self.quando = w.Text(value="", placeholder="1h, 30m … or 0 6 * * *", description="when")
        self.fuso = w.Text(value=DEFAULT_FUSO, description="fuso")
        self.on_schedule: Callable[[Agenda], None] | None = None  # the painel redraws its schedules
        self.agendada: Agenda | None = None  # the schedule made last
        self.lancar = w.Button(description="Launch", button_style="primary")
        self.esquema = w.HTML()
        self.mensagem = w.HTML()
        self.aviso = w.HTML()  # no worker on the plugin's queue: said before anything is sent
        self.lote = w.Box()  # the widget of the batch launched last
        self.launched: Lote | None = None
        self.lancar.on_click(lambda _: self.submit())
        self.alvo.observe(lambda _: self._show_schema(), names="value")
        self.alvo.observe(lambda _: self.check_consumers(), names="value")
        self.fonte.observe(lambda _: self._sync_copies(), names="value")
        self.repetir.observe(lambda _: self._sync_repeat(), names="value")
        fields = (self.alvo, self.fonte, self.copias, self.payload, self.atraso, self.ttl, self.prioridade)
        for field in (*fields, self.repetir, self.quando, self.fuso):
            field.observe(lambda _: self.check(), names="value")
        self.widget = w.VBox(
            [
                w.HBox([self.alvo, self.fonte, self.copias, self.lancar]),
                w.HBox([self.prioridade, self.atraso, self.ttl]),
                w.HBox([self.repetir, self.quando, self.fuso]),
                self.payload,
                self.esquema,
                self.mensagem,
                self.aviso,
                self.lote,
            ]
        )
        self._show_schema()
        self._sync_repeat()
        self.check()
        self.check_consumers()

    @property
    def plugin(self) -> Plugin | None:
        return None if self.alvo.value is None else self.plugins[self.alvo.value]

    @property
    def scheduling(self) -> bool:
        """The form makes a schedule (repeat is not "once, now")."""
        return bool(self.repetir.value != "agora")

    def check(self) -> bool:
        """Say whether Launch (or Schedule) would go, and why not, before anything is sent."""
        if self.scheduling:
            try:
                agenda = self.schedule_of()
            except (PayloadError, ConfigError) as exc:
                self._error(str(exc))
                return False
            self.mensagem.value = (
                f"ready: <code>{esc(agenda.alvo)}</code> {esc(agenda.quando)}, "
                f"first firing {esc(iso(agenda.next_after(agenda.desde)))}"
            )
            return True
        try:
            count = len(self.payloads(copies=1)) if self.fonte.value < 0 else len(self.payloads())
            JobOptions.of(**self.timing())
        except (PayloadError, ConfigError) as exc:
            self._error(str(exc))
            return False
        plugin = self.plugin
        assert plugin is not None
        count = int(self.copias.value) if self.fonte.value < 0 else count
        self.mensagem.value = f"ready: {count} valid payload(s) for <code>{esc(plugin.nome)}</code>"
        return True

    def payloads(self, copies: int | None = None) -> list[dict[str, Any]]:
        """Every payload the form would launch, each valid for the plugin; else PayloadError.

        ``copies`` overrides the form's count (check() validates one copy: they are all the same).
        """
        try:
            base = json.loads(self.payload.value or "{}")
        except json.JSONDecodeError as exc:
            raise PayloadError(f"invalid JSON: {exc}") from None
        if not isinstance(base, dict):
            raise PayloadError(f"the payload must be a JSON object, not {type(base).__name__}")
        plugin = self.plugin
        if plugin is None:
            raise PayloadError("no plugin registered: import the module that defines it")
        if self.fonte.value < 0 or self.dados is None:
            items = [dict(base) for _ in range(int(self.copias.value) if copies is None else copies)]
            rows: list[Any] = [None] * min(1, len(items))  # identical copies: checking one is enough
        else:
            column = self.dados.columns[self.fonte.value]
            series = self.dados.iloc[:, self.fonte.value]
            items = [_row_payload(base, column, value) for value in series.tolist()]
            rows = list(series.index)
            if not items:
                raise PayloadError(f"column {column!s} has no rows")
        if plugin.schema is not None:
            for row, item in zip(rows, items, strict=False):
                _validate(plugin, item, row)
        return items

    def timing(self) -> Timing:
        """The launch keywords the form's prioridade, atraso and ttl stand for."""
        # As in the API, both count from the launch.
        atraso, ttl = float(self.atraso.value), float(self.ttl.value)
        return {"prioridade": int(self.prioridade.value), "atraso": atraso or None, "ttl": ttl or None}

    def schedule_of(self) -> Agenda:
        """The schedule the form stands for, checked as ``orq.agendar`` checks it (not saved)."""
        if self.fonte.value >= 0 or int(self.copias.value) != 1:
            raise PayloadError("a schedule launches one payload per firing: choose the payload, 1 copy")
        if float(self.atraso.value):
            raise PayloadError("atraso does not apply to a schedule (its times say when): set it to 0")
        (payload,) = self.payloads(copies=1)
        plugin = self.plugin
        assert plugin is not None  # payloads() refused otherwise
        return agendas_.make(plugin.kind, plugin.nome, payload, responder_para="-", **self._schedule_args())

    def _schedule_args(self) -> dict[str, Any]:
        text = self.quando.value.strip()
        if not text:
            example = "1h or 30m" if self.repetir.value == "cada" else "0 6 * * *"
            raise PayloadError(f"say when it repeats in 'when', e.g. {example}")
        timing = self.timing()
        return {self.repetir.value: text, "fuso": self.fuso.value.strip(),
                "prioridade": timing["prioridade"], "ttl": timing["ttl"]}  # fmt: skip

    def check_consumers(self) -> str | None:
        """Warn, before anything is sent, when no worker consumes the plugin's queue."""
        plugin = self.plugin
        message = None
        if plugin is not None and not self.orq.closed:
            try:
                message = self.orq.unserved(plugin.fila)
            except OrquestradorError:
                message = None
        self.aviso.value = "" if message is None else f"<span style='color:#9a6700'>⚠ {esc(message)}</span>"
        return message

    def submit(self) -> Lote | Agenda | None:
        """What the button does: launch now, or make the schedule; None when nothing was sent."""
        return self.agendar() if self.scheduling else self.launch()

    def agendar(self) -> Agenda | None:
        """Check the schedule, then save it with ``orq.agendar``; it shows in the form (and the
        painel's schedules tab). Returns it (also ``self.agendada``), or None when refused."""
        try:
            checked = self.schedule_of()
        except (PayloadError, ConfigError) as exc:
            self._error(str(exc))
            return None
        plugin = self.plugin
        assert plugin is not None  # schedule_of() refused otherwise
        self.check_consumers()
        try:
            agenda = self.orq.agendar(plugin.kind, plugin.nome, checked.payload, **self._schedule_args())
        except Exception as exc:  # a broker error, a closed orchestrator: shown where the user clicked
            self._error(f"{type(exc).__name__}: {exc}")
            return None
        self.agendada = agenda
        self.mensagem.value = (
            f"scheduled <code>{esc(agenda.id)}</code>: <code>{esc(agenda.alvo)}</code> "
            f"{esc(agenda.quando)}, next firing {esc(iso(agenda.next_after(agenda.desde)))}"
        )
        if self.on_schedule is not None:
            self.on_schedule(agenda)
        return agenda

    def launch(self) -> Lote | None:
        """Validate every payload, then launch them all; the batch shows in the form.

        Returns the Lote launched (also ``self.launched``), or None when nothing was sent.
        """
        try:
            items = self.payloads()
            timing = self.timing()
            JobOptions.of(**timing)
        except (PayloadError, ConfigError) as exc:
            self._error(str(exc))
            return None
        plugin = self.plugin
        assert plugin is not None  # payloads() refused otherwise
        self.check_consumers()
        start: Any = self.orq.iniciar_coletas if plugin.kind == "escavador" else self.orq.iniciar_execucoes
        try:
            lote: Lote = start(plugin.nome, items, progress=False, **timing)
        except Exception as exc:  # a broker error, a closed orchestrator: shown where the user clicked
            self._error(f"{type(exc).__name__}: {exc}")
            return None
        self.mensagem.value = f"launched {len(lote)} × <code>{esc(plugin.nome)}</code>"
        self.launched = lote
        self.lote.children = [lote_widget(lote)]
        return lote

    def _error(self, message: str) -> None:
        self.mensagem.value = f"<span style='color:#b00'>{esc(message, 1000)}</span>"

    def _sync_copies(self) -> None:
        self.copias.disabled = self.fonte.value >= 0

    def _sync_repeat(self) -> None:
        scheduling = self.scheduling
        self.quando.disabled = self.fuso.disabled = not scheduling
        self.atraso.disabled = scheduling
        self.lancar.description = "Schedule" if scheduling else "Launch"

    def _show_schema(self) -> None:
        plugin = self.plugin
        if plugin is None or plugin.schema is None:
            self.esquema.value = "<small>no payload schema: any JSON object is sent as is</small>"
            return
        spec = plugin.schema.model_json_schema()
        required = set(spec.get("required", []))
        fields = [
            f"<code>{esc(name)}</code> {esc(prop.get('type', prop.get('anyOf', '')))}"
            + (" <b>required</b>" if name in required else "")
            for name, prop in spec.get("properties", {}).items()
        ]
        self.esquema.value = "<small>payload fields: " + ", ".join(fields) + "</small>"


def _row_payload(base: dict[str, Any], column: Any, value: Any) -> dict[str, Any]:
    """A dict cell is the payload (over the editor's defaults); any other value becomes one field."""
    if isinstance(value, dict):
        return {**base, **value}
    return {**base, str(column): _plain(value)}


def _plain(value: Any) -> Any:
    """DataFrame cells as JSON values: NaN is null, timestamps are ISO text."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


def _validate(plugin: Plugin, payload: dict[str, Any], row: Any) -> None:
    assert plugin.schema is not None
    try:
        plugin.schema.model_validate(payload)
    except ValidationError as exc:
        where = "" if row is None else f"row {row}: "
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'payload'}: {e['msg']}" for e in exc.errors()[:3]
        )
        raise PayloadError(f"{where}not a valid {plugin.nome} payload: {problems}") from None
