"""W3C trace context on envelopes, and OpenTelemetry spans when the application asked for them.

Every envelope carries a ``traceparent`` in its ``headers`` (wire format v1), so one job chain —
launch, collection, pipeline children, their results — shares one trace id across processes
even where OpenTelemetry is not installed: that part is plain string handling.

Spans are recorded only when ``opentelemetry`` is already imported by the application and a
real tracer provider is configured (``trace.set_tracer_provider`` or :func:`set_tracer_provider`).
We never import OpenTelemetry ourselves to find out, so a worker without it pays nothing: an
application that configured a provider has necessarily imported the package.
"""

from __future__ import annotations

import random
import re
import sys
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Literal

TRACE_HEADERS = ("traceparent", "tracestate")
SpanKindName = Literal["producer", "consumer", "internal"]

_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?", re.ASCII)
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
# Trace ids need uniqueness, not secrecy: the module's generator (reseeded in forked children,
# like OpenTelemetry's own id generator uses) costs far less than os.urandom per message.
_bits = random.getrandbits


def parse_traceparent(value: object) -> tuple[str, str, str] | None:
    """``(trace_id, parent_id, flags)`` of a valid W3C traceparent; ``None`` for anything else."""
    if not isinstance(value, str) or len(value) > 512:
        return None
    match = _TRACEPARENT.fullmatch(value)
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    # Version ff is forbidden; version 00 has no trailing fields; later versions may add some.
    if version == "ff" or (version == "00" and rest) or trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    return trace_id, span_id, flags


def new_traceparent(parent: object = None) -> str:
    """A traceparent for a new span: a child of ``parent`` if valid, else the root of a new trace.

    A new trace is marked sampled so that downstream processes with OpenTelemetry record it.
    """
    parsed = parse_traceparent(parent)
    if parsed is None:
        return f"00-{_bits(128) or 1:032x}-{_bits(64) or 1:016x}-01"
    return f"00-{parsed[0]}-{_bits(64) or 1:016x}-{parsed[2]}"


def _child_headers(parent: Mapping[str, str] | None) -> dict[str, str]:
    traceparent = parent.get("traceparent") if parent else None
    if traceparent is not None:
        parsed = parse_traceparent(traceparent)
        if parsed is not None:
            headers = {"traceparent": f"00-{parsed[0]}-{_bits(64) or 1:016x}-{parsed[2]}"}
            tracestate = parent.get("tracestate") if parent else None
            if tracestate is not None:
                headers["tracestate"] = tracestate
            return headers
    return {"traceparent": new_traceparent(_current_traceparent())}


class Span:
    """One step of a job chain. This base records nothing: it only carries the trace headers."""

    __slots__ = ("headers",)
    recording = False

    def __init__(self, headers: dict[str, str]) -> None:
        #: The trace headers to put on the envelope this step produces.
        self.headers = headers

    def child(self, name: str, kind: SpanKindName, attributes: Mapping[str, Any] | None = None) -> Span:
        """A span caused by this one, in the same process (e.g. the result of a handled job)."""
        # Our own, valid traceparent: only the span id (characters 36-51) changes.
        traceparent = self.headers["traceparent"]
        headers = {"traceparent": f"{traceparent[:36]}{_bits(64) or 1:016x}{traceparent[52:]}"}
        if "tracestate" in self.headers:
            headers["tracestate"] = self.headers["tracestate"]
        return Span(headers)

    def set_attribute(self, key: str, value: Any) -> None:
        """Ignored when nothing is recorded."""

    def fail(self, exc: BaseException) -> None:
        """Ignored when nothing is recorded."""

    def end(self) -> None:
        """Ignored when nothing is recorded."""

    def __enter__(self) -> Span:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is not None:
            self.fail(exc)
        self.end()


def start(
    name: str,
    kind: SpanKindName,
    parent: Mapping[str, str] | None,
    attributes: Mapping[str, Any] | None = None,
) -> Span:
    """Start a span continuing ``parent``'s traceparent, else the caller's current OTel context.

    A malformed or missing traceparent never fails: the span starts a new trace instead.
    """
    tracer = _tracer()
    if tracer is None:
        return Span(_child_headers(parent))
    return _OtelSpan.start(tracer, name, kind, parent, attributes)


# -- OpenTelemetry, only when the application uses it ----------------------------------------

_explicit_provider: Any = None
_tracers: dict[int, Any] = {}


def set_tracer_provider(provider: Any) -> None:
    """Record spans with this provider instead of OpenTelemetry's global one (``None``: global).

    Useful for tests and for applications that keep several providers; OpenTelemetry's global
    provider can be set only once per process.
    """
    global _explicit_provider
    _explicit_provider = provider
    _tracers.clear()


def _otel() -> Any:
    """The ``opentelemetry.trace`` module if the application imported it, else ``None``."""
    return sys.modules.get("opentelemetry.trace")


def _tracer() -> Any:
    otel = _otel()
    if otel is None and _explicit_provider is None:
        return None
    provider = _explicit_provider
    if provider is None:
        provider = otel.get_tracer_provider()
        if isinstance(provider, otel.ProxyTracerProvider | otel.NoOpTracerProvider):
            return None  # no SDK configured: spans would be dropped anyway
    tracer = _tracers.get(id(provider))
    if tracer is None:
        from orquestrador import __version__

        tracer = provider.get_tracer("orquestrador", __version__)
        _tracers[id(provider)] = tracer
    return tracer


def _current_traceparent() -> str | None:
    """The caller's active OpenTelemetry span as a traceparent, when there is one."""
    otel = _otel()
    if otel is None:
        return None
    context = otel.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def _propagator() -> Any:
    global _w3c
    if _w3c is None:
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        _w3c = TraceContextTextMapPropagator()
    return _w3c


_w3c: Any = None


class _OtelSpan(Span):
    __slots__ = ("_span", "_tracer")
    recording = True

    def __init__(self, tracer: Any, span: Any) -> None:
        from opentelemetry import trace

        headers: dict[str, str] = {}
        _propagator().inject(headers, context=trace.set_span_in_context(span))
        super().__init__(headers)
        self._tracer = tracer
        self._span = span

    @classmethod
    def start(
        cls,
        tracer: Any,
        name: str,
        kind: SpanKindName,
        parent: Mapping[str, str] | Any,
        attributes: Mapping[str, Any] | None,
    ) -> _OtelSpan:
        from opentelemetry import trace

        context = None  # the current context
        if isinstance(parent, _OtelSpan):
            context = trace.set_span_in_context(parent._span)
        elif parent and parse_traceparent(parent.get("traceparent")) is not None:
            context = _propagator().extract(dict(parent))
        span = tracer.start_span(
            name, context=context, kind=getattr(trace.SpanKind, kind.upper()), attributes=attributes
        )
        return cls(tracer, span)

    def child(self, name: str, kind: SpanKindName, attributes: Mapping[str, Any] | None = None) -> Span:
        return _OtelSpan.start(self._tracer, name, kind, self, attributes)

    def set_attribute(self, key: str, value: Any) -> None:
        if value is not None:
            self._span.set_attribute(key, value)

    def fail(self, exc: BaseException) -> None:
        from opentelemetry.trace import Status, StatusCode

        self._span.record_exception(exc)
        self._span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:500]))

    def end(self) -> None:
        self._span.end()


SYSTEMS = {"amqp": "rabbitmq", "amqps": "rabbitmq", "rediss": "redis", "tls": "nats"}


def messaging(
    system: str, destination: str, message_id: str | None = None, correlation_id: str | None = None
) -> dict[str, Any]:
    """The OpenTelemetry messaging attributes every span of ours carries; ``system`` a URL scheme."""
    attributes: dict[str, Any] = {
        "messaging.system": SYSTEMS.get(system, system),
        "messaging.destination.name": destination,
    }
    if message_id is not None:
        attributes["messaging.message.id"] = message_id
    if correlation_id is not None:
        attributes["orq.correlation_id"] = correlation_id
    return attributes


__all__ = [
    "TRACE_HEADERS",
    "Span",
    "messaging",
    "new_traceparent",
    "parse_traceparent",
    "set_tracer_provider",
    "start",
]
