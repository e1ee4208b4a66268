"""Log lines (app/core/logs.py): JSON objects with the ids of the work they were written in, and
exceptions without their messages."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from uuid import uuid4

import pytest
import structlog
from asgiref.sync import async_to_sync

from app.core import logs
from app.ledger.commands import CommandContext, running
from eventstore.records import RecordedEvent
from projections.context import applying


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    """What the logger "eventfold.test" writes, through the JSON formatter."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logs.formatter("json"))
    logger = logging.getLogger("eventfold.test")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield out
    finally:
        logger.removeHandler(handler)
        structlog.contextvars.clear_contextvars()


def written(out: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def event(correlation_id: str = "c-1") -> RecordedEvent:
    return RecordedEvent(
        42, 7, uuid4(), "account", 3, uuid4(), "ledger.FundsDeposited", 1, {"amount": 5},
        {"correlation_id": correlation_id}, datetime.now(UTC),
    )  # fmt: skip


def test_a_line_is_one_json_object_with_level_logger_and_time(lines):
    logging.getLogger("eventfold.test").info("hello %s", "there")
    structlog.get_logger("eventfold.test").warning("structured", count=3)
    first, second = written(lines)
    assert first["event"] == "hello there" and first["level"] == "info" and first["logger"] == "eventfold.test"
    assert first["timestamp"].endswith("Z")
    assert (second["event"], second["count"], second["level"]) == ("structured", 3, "warning")


def test_an_exception_is_logged_without_its_message(lines):
    owner = "Zebulon " + "Quaxworth"  # not on the line that raises: a traceback shows that line's source
    try:
        raise ValueError(f"the owner {owner} is invalid")
    except ValueError:
        logging.getLogger("eventfold.test").exception("it failed")
    [line] = written(lines)
    assert "Quaxworth" not in lines.getvalue()
    assert line["exception"].splitlines()[-1] == "ValueError"
    assert "test_an_exception_is_logged_without_its_message" in line["exception"]  # where it failed


def test_a_line_written_while_an_event_is_applied_carries_its_ids(lines):
    applied = event("corr-9")
    with applying("account_summary", applied):
        logging.getLogger("eventfold.test").info("inside")
    logging.getLogger("eventfold.test").info("outside")
    inside, outside = written(lines)
    assert inside["correlation_id"] == "corr-9" and inside["causation_id"] == str(applied.event_id)
    assert (inside["stream"], inside["position"]) == (str(applied.stream_id), 42)
    assert inside["subscriber"] == "account_summary"
    assert not {"correlation_id", "causation_id", "stream", "position"} & set(outside)


def test_a_command_binds_its_correlation_cause_and_stream_and_restores_what_was_bound(lines):
    structlog.contextvars.bind_contextvars(request_id="r-1", correlation_id="outer")
    ctx = CommandContext(actor="t", correlation_id=uuid4(), causation_id=uuid4())
    stream = uuid4()
    with running(ctx, "Deposit", stream):
        logging.getLogger("eventfold.test").info("in the command")
    logging.getLogger("eventfold.test").info("after it")
    during, after = written(lines)
    assert during["correlation_id"] == str(ctx.correlation_id) and during["causation_id"] == str(ctx.causation_id)
    assert (during["command"], during["stream"], during["request_id"]) == ("Deposit", str(stream), "r-1")
    assert after["correlation_id"] == "outer" and "command" not in after


def test_a_request_binds_its_request_id_and_a_correlation_id_for_its_commands(lines):
    seen = []

    async def app(scope, receive, send):
        logging.getLogger("eventfold.test").info("handling")
        seen.append(logs.correlation_id())

    for given in ([(b"x-request-id", b"abc-123")], [(b"x-request-id", b"has spaces")], []):
        async_to_sync(logs.RequestContext(app))({"type": "http", "headers": given}, None, None)
    good, bad, none = written(lines)
    assert good["request_id"] == "abc-123"
    assert len(bad["request_id"]) == 32 and len(none["request_id"]) == 32  # made here: the given one is no id
    assert [str(c) for c in seen] == [good["correlation_id"], bad["correlation_id"], none["correlation_id"]]
    assert len(set(seen)) == 3
    assert structlog.contextvars.get_contextvars() == {}


def test_levels_per_logger_are_parsed_and_a_bad_entry_is_refused():
    assert logs.parse_levels(" celery=warning , app=DEBUG,") == {"celery": "WARNING", "app": "DEBUG"}
    for bad in ("celery", "=INFO", "app=LOUD"):
        with pytest.raises(ValueError, match="LOG_LEVELS"):
            logs.parse_levels(bad)


def test_uvicorn_access_lines_of_probes_that_answer_ok_are_dropped():
    from app.core.logs import NotProbes

    def line(path: str, status: int) -> logging.LogRecord:
        args = ("127.0.0.1:5000", "GET", path, "1.1", status)
        return logging.LogRecord("uvicorn.access", logging.INFO, "", 0, '%s - "%s %s HTTP/%s" %d', args, None)

    kept = NotProbes().filter
    assert not kept(line("/healthz", 200)) and not kept(line("/metrics?x=1", 200))
    assert kept(line("/healthz", 503))  # a failing probe still shows
    assert kept(line("/api/accounts", 200)) and kept(line("/healthz-not", 200))
