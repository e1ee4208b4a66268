"""Logging: one format for every line of every process, and the ids each line carries.

Django applies settings.LOGGING through `configure` (settings.LOGGING_CONFIG); the Celery worker
and beat use the same (app/celery.py), and so does uvicorn once Django is set up. Every record,
from structlog loggers and from the standard library's (Django, Celery, uvicorn) alike, goes
through structlog's ProcessorFormatter: a JSON object per line (`LOG_FORMAT=json`, production's
default) or a readable line (`console`).

Each line carries, where they exist:

- `request_id` and `correlation_id`, bound for the whole of an HTTP request (`RequestContext`);
  the request's commands take that correlation id (app/ledger/commands.py);
- `command`, `stream`, `causation_id` while a command runs;
- the event being applied or handled by the catch-up, with its correlation id
  (projections/context.py), so the projection work and the process manager's commands carry
  the correlation id of the request that started it all;
- `task_id` and `task` in a Celery task; `trace_id` and `span_id` when tracing is on.

Exceptions are logged as the stack and the types of the exceptions (projections/tracebacks.py),
never their messages, which may quote personal data (an account owner's name in a failing
payload or a database error's detail).
"""

from __future__ import annotations

import logging
import logging.config
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from uuid import UUID, uuid4

import structlog
from opentelemetry import trace

from app.core import headers
from projections import context, tracebacks

FORMATS = ("json", "console")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# Loggers that come with handlers of their own (Django's defaults, uvicorn's): theirs are removed,
# so that their lines reach the one handler on the root, formatted like every other line.
OWN_HANDLERS = ("django", "django.server", "uvicorn", "uvicorn.error", "uvicorn.access", "celery")


PROBES = ("/healthz", "/metrics")


class NotProbes(logging.Filter):
    """Drops uvicorn's access lines for health probes and metric scrapes: they come every few
    seconds from machines, say nothing an operator reads, and would bury the requests that do
    (their failures still show: /healthz answers 503 with its reason, and a 5xx logs an error)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        path = str(args[2]) if len(args) >= 5 else ""
        return not (path.split("?", 1)[0] in PROBES and str(args[4]).startswith(("2", "3")))


# -- the settings -----------------------------------------------------------------------------
def parse_levels(value: str) -> dict[str, str]:
    """`LOG_LEVELS`: "celery=WARNING,app=DEBUG" as {logger: level}; a bad entry stops the start."""
    levels: dict[str, str] = {}
    for item in value.split(","):
        if not item.strip():
            continue
        name, sep, level = item.partition("=")
        level = level.strip().upper()
        if not sep or not name.strip() or level not in LEVELS:
            raise ValueError(
                f"LOG_LEVELS takes logger=LEVEL pairs separated by commas, e.g. celery=WARNING,app=DEBUG "
                f"(a level is one of {', '.join(LEVELS)}); not {item.strip()!r}"
            )
        levels[name.strip()] = level
    return levels


def settings_logging(*, fmt: str, level: str, levels: dict[str, str]) -> dict[str, Any]:
    """The LOGGING setting: one handler on the root, formatted by `formatter`."""
    if fmt not in FORMATS:
        raise ValueError(f"LOG_FORMAT is json or console, not {fmt!r}")
    if level.upper() not in LEVELS:
        raise ValueError(f"LOG_LEVEL is one of {', '.join(LEVELS)}, not {level!r}")
    loggers: dict[str, dict[str, Any]] = {name: {"handlers": [], "propagate": True} for name in OWN_HANDLERS}
    loggers["uvicorn.access"]["filters"] = ["not_probes"]
    for name, wanted in levels.items():
        loggers.setdefault(name, {"handlers": [], "propagate": True})["level"] = wanted
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"structured": {"()": "app.core.logs.formatter", "fmt": fmt}},
        "filters": {"not_probes": {"()": "app.core.logs.NotProbes"}},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "structured"}},
        "root": {"handlers": ["console"], "level": level.upper()},
        "loggers": loggers,
    }


# -- the processors -----------------------------------------------------------------------------
EventDict = MutableMapping[str, Any]


def add_event_context(logger: Any, method: str, event_dict: EventDict) -> EventDict:
    """The event being applied or handled (projections/context.py): what the line does not bind itself."""
    for key, value in context.log_fields().items():
        event_dict.setdefault(key, value)
    return event_dict


def add_trace(logger: Any, method: str, event_dict: EventDict) -> EventDict:
    """The current span's trace id and span id, when tracing is on and a span is current."""
    span = trace.get_current_span().get_span_context()
    if span.is_valid:
        event_dict.setdefault("trace_id", format(span.trace_id, "032x"))
        event_dict.setdefault("span_id", format(span.span_id, "016x"))
    return event_dict


def redact_exception(logger: Any, method: str, event_dict: EventDict) -> EventDict:
    """An exception as its stack and types, without any message (projections/tracebacks.py)."""
    exc_info = event_dict.pop("exc_info", None)
    if exc_info is True:
        exc_info = sys.exc_info()
    if isinstance(exc_info, BaseException):
        event_dict["exception"] = tracebacks.redacted(exc_info)
    elif isinstance(exc_info, tuple) and exc_info[1] is not None:
        event_dict["exception"] = tracebacks.redacted(exc_info[1])
    return event_dict


SHARED: list[Any] = [
    structlog.contextvars.merge_contextvars,
    add_event_context,
    add_trace,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    redact_exception,
]


def formatter(fmt: str = "console") -> structlog.stdlib.ProcessorFormatter:
    """The one formatter (LOGGING's "structured"): JSON lines or readable ones."""
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty(), exception_formatter=_plain)
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=SHARED,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )


def _plain(out: Any, exc_info: Any) -> None:  # the console renderer never sees one: redact_exception took it
    out.write(str(exc_info))


def configure(config: dict[str, Any]) -> None:
    """settings.LOGGING_CONFIG: structlog's loggers hand their lines to the standard library's,
    then LOGGING is applied."""
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *SHARED,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    logging.config.dictConfig(config)
    logging.captureWarnings(True)  # Python's warnings too, as lines of the logger "py.warnings"


# -- the request's ids --------------------------------------------------------------------------
ASGIApp = Callable[[dict[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]


class RequestContext:
    """ASGI middleware: every line logged while an HTTP request is handled carries its
    `request_id` (its valid X-Request-ID, else a new one) and a new `correlation_id`, which the
    commands it sends give their events."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope.get("headers", ()) if k == b"x-request-id"), None)
        request_id = headers.request_id_or_none(given.decode("latin-1")) if given is not None else None
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id or uuid4().hex, correlation_id=str(uuid4()))
        try:
            await self.app(scope, receive, send)
        finally:
            structlog.contextvars.clear_contextvars()


def correlation_id() -> UUID | None:
    """The correlation id bound for the work now running (an HTTP request's), if any."""
    bound = structlog.contextvars.get_contextvars().get("correlation_id")
    try:
        return UUID(bound) if bound else None
    except ValueError:
        return None


# -- Celery tasks -------------------------------------------------------------------------------
def task_started(task_id: str | None = None, task: Any = None, **kwargs: Any) -> None:
    """task_prerun: a task's lines carry its id and name, and nothing of the task before it."""
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(task_id=task_id, task=getattr(task, "name", None))


def task_ended(**kwargs: Any) -> None:
    """task_postrun."""
    structlog.contextvars.clear_contextvars()
