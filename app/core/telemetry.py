"""Tracing with OpenTelemetry, off unless the standard `OTEL_*` variables turn it on.

Each process sets itself up: the web process from app/asgi.py, each Celery worker process and
beat from app/celery.py; no wrapper command (`opentelemetry-instrument`) is needed.

- `OTEL_TRACES_EXPORTER`: `otlp` (OTLP over HTTP, configured by `OTEL_EXPORTER_OTLP_*` as the
  exporter reads them, e.g. `OTEL_EXPORTER_OTLP_ENDPOINT=http://jaeger:4318`), `console` (one
  JSON object per span on standard output), both (`otlp,console`), or unset / `none`: off.
- `OTEL_SDK_DISABLED=true` turns it off whatever else is set.
- `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER(_ARG)`, `OTEL_BSP_*`:
  as the SDK reads them. The service name defaults to `eventfold`, and every span's resource
  says which process made it (`eventfold.process`: web, worker or beat).

On, the process gets a tracer provider that batches spans to the exporters, and the ASGI
application (app/asgi.py), Celery and psycopg are instrumented. The trace context then travels
in the event metadata (eventstore/tracing.py), so one trace shows the request, the append, the
catch-up that applies its events, the read-model writes and the commands that follow.
Off, nothing is set up and nothing is instrumented.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from django.conf import settings
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from eventstore import tracing

log = logging.getLogger(__name__)
EXCLUDED_URLS = "healthz,metrics"  # probes and scrapes: no trace worth keeping


def configure(process: str) -> bool:
    """Turn tracing on in this process if the environment asks for it (once; later calls change
    nothing). Returns whether tracing is on."""
    if tracing.active():
        return True
    names = settings.TRACES_EXPORTERS
    if not names:
        return False
    provider = TracerProvider(resource=resource(process))
    for name in names:
        provider.add_span_processor(BatchSpanProcessor(exporter(name)))
    trace.set_tracer_provider(provider)
    instrument()
    log.info("tracing on: spans go to %s", ", ".join(names))
    return True


def resource(process: str) -> Resource:
    """The SDK's resource from OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, with our defaults under it."""
    given = Resource.create()
    named = os.environ.get("OTEL_SERVICE_NAME") or "service.name=" in os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
    defaults: dict[str, Any] = {"eventfold.process": process}
    if not named:
        defaults[SERVICE_NAME] = "eventfold"
    return given.merge(Resource(defaults)) if not named else Resource(defaults).merge(given)


def exporter(name: str) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter(formatter=lambda span: span.to_json(indent=None) + "\n")
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()  # reads OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT, _HEADERS, _TIMEOUT itself


def instrument() -> None:
    """Celery (task spans; the trace context in task headers) and psycopg (a span per statement
    on Django's connections). The web process also wraps its ASGI application (`traced`)."""
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor

    if not CeleryInstrumentor().is_instrumented_by_opentelemetry:
        CeleryInstrumentor().instrument()
    if not PsycopgInstrumentor().is_instrumented_by_opentelemetry:
        PsycopgInstrumentor().instrument()


def traced(app: Any) -> Any:
    """The ASGI application with a server span per HTTP request, when tracing is on."""
    if not tracing.active():
        return app
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    return OpenTelemetryMiddleware(app, excluded_urls=EXCLUDED_URLS, exclude_spans=["receive", "send"])


def shutdown() -> None:
    """Send the spans still batched (a worker process ending)."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.shutdown()
