"""The event a projection or a process manager is working on, for what happens meanwhile.

    with applying("account_summary", event):
        projection.apply(event, cur)

Inside the block, every log line carries the event's `correlation_id`, its id as `causation_id`,
its stream and position and the subscriber's name (app/core/logs.py reads `current()`), and,
when tracing is on, the block runs in a span whose parent is the span that appended the event
(eventstore/tracing.py), so what the subscriber writes and the commands it sends join the trace
of the request that caused the event.

One ContextVar set and reset per block: cheap enough for every event of a catch-up batch, and
log lines pay for the fields only when they are written.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Any

from opentelemetry.trace import Span

from eventstore import tracing
from eventstore.records import RecordedEvent

_current: ContextVar[tuple[str, RecordedEvent] | None] = ContextVar("eventfold_applying", default=None)


def current() -> tuple[str, RecordedEvent] | None:
    """(subscriber name, event) of the innermost `applying` block, if any."""
    return _current.get()


def log_fields() -> dict[str, Any]:
    """The fields a log line written now takes from the event being applied (none outside)."""
    found = _current.get()
    if found is None:
        return {}
    name, event = found
    fields: dict[str, Any] = {
        "subscriber": name,
        "causation_id": str(event.event_id),
        "stream": str(event.stream_id),
        "position": event.position,
        "event_type": event.type,
    }
    correlation = event.metadata.get("correlation_id")
    if correlation:
        fields["correlation_id"] = correlation
    return fields


class applying:
    """The block in which `name` (a projection or a process manager) applies or handles `event`."""

    __slots__ = ("_span", "_token", "event", "kind", "name", "span")

    def __init__(self, name: str, event: RecordedEvent, kind: str = "project") -> None:
        self.name, self.event, self.kind = name, event, kind
        self.span: Span | None = None
        self._span: AbstractContextManager[Span | None] | None = None
        self._token: Token[tuple[str, RecordedEvent] | None] | None = None

    def __enter__(self) -> applying:
        self._token = _current.set((self.name, self.event))
        if tracing.active():
            event = self.event
            self._span = tracing.consuming(
                f"{self.kind} {self.name}",
                event.metadata,
                {
                    "eventfold.subscriber": self.name,
                    "eventfold.event_type": event.type,
                    "eventfold.event_id": str(event.event_id),
                    "eventfold.stream": str(event.stream_id),
                    "eventfold.position": event.position,
                },
            )
            self.span = self._span.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            if self._span is not None:
                self._span.__exit__(kind, exc, tb)
        finally:
            if self._token is not None:
                _current.reset(self._token)

    def failed(self, exc: BaseException) -> None:
        """The subscriber failed on the event (caught inside the block): the span says so."""
        tracing.failed(self.span, exc)
