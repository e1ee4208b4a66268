"""The settings of logs and traces: JSON lines by default in production only, levels per logger,
and a bad value of LOG_FORMAT, LOG_LEVEL, LOG_LEVELS, OTEL_TRACES_EXPORTER or EVENTFOLD_TRACE_URL
stops the process with one sentence naming the variable."""

from __future__ import annotations

import pytest

from tests.integration.production.test_settings import manage, production_env, production_settings


def test_production_logs_json_lines_and_levels_come_per_logger(monkeypatch):
    prod = production_settings(monkeypatch, LOG_LEVELS="celery=warning, app.ledger=DEBUG")
    assert prod["LOG_FORMAT"] == "json"
    assert prod["LOGGING"]["formatters"]["structured"]["fmt"] == "json"
    assert prod["LOGGING"]["root"]["level"] == "INFO"
    assert prod["LOGGING"]["loggers"]["celery"]["level"] == "WARNING"
    assert prod["LOGGING"]["loggers"]["app.ledger"] == {"handlers": [], "propagate": True, "level": "DEBUG"}
    assert prod["TRACES_EXPORTERS"] == []  # off unless asked for

    readable = production_settings(monkeypatch, LOG_FORMAT="console", LOG_LEVEL="warning")
    assert readable["LOGGING"]["formatters"]["structured"]["fmt"] == "console"
    assert readable["LOGGING"]["root"]["level"] == "WARNING"


def test_development_logs_readable_lines(monkeypatch):
    dev = production_settings(monkeypatch, DJANGO_ENV="development")
    assert dev["LOG_FORMAT"] == "console"


@pytest.mark.parametrize(
    ("variables", "exporters"),
    [
        ({"OTEL_TRACES_EXPORTER": "console"}, ["console"]),
        ({"OTEL_TRACES_EXPORTER": "otlp, console"}, ["otlp", "console"]),
        ({"OTEL_TRACES_EXPORTER": "none"}, []),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, []),
    ],
)
def test_tracing_follows_the_standard_variables(monkeypatch, variables, exporters):
    assert production_settings(monkeypatch, **variables)["TRACES_EXPORTERS"] == exporters


@pytest.mark.parametrize(
    ("variables", "target"),
    [
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector.example:4318"}, "http://collector.example:4318/v1/traces"),
        (
            {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://tempo.example/otlp/v1/traces"},
            "https://tempo.example/otlp/v1/traces",  # the signal's own variable: taken as it is
        ),
    ],
)
def test_otlp_builds_the_exporter_that_sends_where_the_standard_variables_say(monkeypatch, variables, target):
    """The OTLP exporter package is installed and reads its endpoint itself (nothing is sent here)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    from app.core import telemetry

    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    names = production_settings(monkeypatch, OTEL_TRACES_EXPORTER="otlp", **variables)["TRACES_EXPORTERS"]
    assert names == ["otlp"]
    exporter = telemetry.exporter(names[0])
    try:
        assert isinstance(exporter, OTLPSpanExporter)
        assert exporter._endpoint == target
    finally:
        exporter.shutdown()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LOG_FORMAT", "xml"),
        ("LOG_LEVEL", "LOUD"),
        ("LOG_LEVELS", "celery"),
        ("LOG_LEVELS", "celery=LOUD"),
        ("OTEL_TRACES_EXPORTER", "zipkin"),
        ("EVENTFOLD_TRACE_URL", "http://localhost:16686/trace/"),
        ("EVENTFOLD_TRACE_URL", "javascript:alert({trace_id})"),
    ],
)
def test_a_bad_value_stops_the_process_naming_the_variable(name, value):
    done = manage("check", env=production_env(**{name: value}))
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("Eventfold cannot start: "), done.stderr
    assert name in last, last
