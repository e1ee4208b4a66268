"""Traces through the log: the trace context travels in the event metadata.

When tracing is on in a process (an OpenTelemetry tracer provider is set: app/core/telemetry.py
does it from the `OTEL_*` variables), every append runs in a span of its own and writes that
span's W3C trace context (`traceparent`, and `tracestate` when there is one) into the metadata of
each event it appends. Whoever applies or handles the event later, in another process, starts its
span with that context as the parent (`consuming`), so the read-model write and the commands that
follow join the trace of the request that appended the event.

Off (no provider), nothing here starts a span or writes a key: `active()` is the one check, and
the store and the runner ask it before anything else. Only OpenTelemetry's API is used here; the
SDK is the application's business.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACEPARENT = "traceparent"
SCOPE = "eventfold"
_propagator = TraceContextTextMapPropagator()


def active() -> bool:
    """Whether this process traces (a tracer provider was set)."""
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def span(
    name: str, attributes: Mapping[str, Any] | None = None, *, kind: SpanKind = SpanKind.INTERNAL
) -> AbstractContextManager[Span | None]:
    """A span around a block when tracing is on (nothing at all when off). Exceptions mark it as
    an error by their type only: their messages may quote personal data."""
    if not active():
        return nullcontext()
    return _span(name, kind=kind, attributes=attributes or {})


@contextmanager
def _span(
    name: str, *, kind: SpanKind, attributes: Mapping[str, Any], parent: Any = None, links: list[Link] | None = None
) -> Iterator[Span]:
    tracer = trace.get_tracer(SCOPE)
    with tracer.start_as_current_span(
        name,
        context=parent,
        kind=kind,
        attributes={k: v for k, v in attributes.items() if v is not None},
        links=links,
        record_exception=False,
        set_status_on_exception=False,
    ) as current:
        try:
            yield current
        except BaseException as exc:
            failed(current, exc)
            raise


def failed(current: Span | None, exc: BaseException) -> None:
    """Mark a span as failed, naming the exception's type (never its message)."""
    if current is not None:
        current.set_status(Status(StatusCode.ERROR, type(exc).__name__))


def carrier() -> dict[str, str]:
    """The current span's trace context as metadata keys (empty without a recording span)."""
    found: dict[str, str] = {}
    if trace.get_current_span().get_span_context().is_valid:
        _propagator.inject(found)
    return found


def consuming(
    name: str, metadata: Mapping[str, Any], attributes: Mapping[str, Any]
) -> AbstractContextManager[Span | None]:
    """A span for applying or handling an event, a child of the span that appended it (from its
    metadata's `traceparent`), linked to whatever span runs now (the catch-up task). Nothing when
    tracing is off or the event carries no trace context."""
    if not active() or TRACEPARENT not in metadata:
        return nullcontext()
    carried = {k: metadata[k] for k in (TRACEPARENT, "tracestate") if isinstance(metadata.get(k), str)}
    parent = _propagator.extract(carried)
    if not trace.get_current_span(parent).get_span_context().is_valid:
        return nullcontext()
    now = trace.get_current_span().get_span_context()
    links = [Link(now)] if now.is_valid else None
    return _span(name, kind=SpanKind.CONSUMER, attributes=attributes, parent=parent, links=links)


def trace_id(metadata: Mapping[str, Any]) -> str | None:
    """The trace id (32 hex digits) in an event's `traceparent`, if it has a valid one."""
    value = metadata.get(TRACEPARENT)
    if not isinstance(value, str):
        return None
    context = trace.get_current_span(_propagator.extract({TRACEPARENT: value})).get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None
