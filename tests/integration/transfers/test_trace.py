"""One trace for a transfer, recorded by the SDK's in-memory exporter: the HTTP request, its
command and append, then the catch-up that applies each event (its read-model writes) and the
process manager's commands, each appending events that carry the same trace on.

The request goes through the ASGI application as app/asgi.py builds it when tracing is on
(request context, server span, the API's handler); the catch-up runs here, in this process, as
the worker's task runs it (the session worker, if any, is not consuming between tests)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from uuid import UUID

import pytest
from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator
from django.db import connections
from opentelemetry import trace
from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from opentelemetry.util._once import Once

from app.core import logs, telemetry
from app.ledger.process import expire_transfers
from eventstore import tracing
from eventstore.records import bucket_of
from projections import catchup, runner, status
from tests.conftest import wait_for
from tests.integration.api.conftest import make_user
from tests.integration.transfers.conftest import events, finished, open_account


@pytest.fixture
def spans(transactional_db) -> Iterator[InMemorySpanExporter]:
    """Tracing on in this process, into memory, for one test (then off again, as for every other test)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    connections.close_all()  # new connections come from the instrumented connect: their statements are spans
    PsycopgInstrumentor().instrument()
    try:
        yield exporter
    finally:
        PsycopgInstrumentor().uninstrument()
        connections.close_all()
        provider.shutdown()
        trace._TRACER_PROVIDER = None  # the SDK's own tests reset it so (opentelemetry.test.globals_test)
        trace._TRACER_PROVIDER_SET_ONCE = Once()
    assert not tracing.active()


def post(path: str, body: dict, token: str) -> tuple[int, dict]:
    """A request through the web process's HTTP application, traced and with its log context."""
    from app import asgi

    application = logs.RequestContext(telemetry.traced(asgi.http_application))
    raw = json.dumps(body).encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"testserver"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(raw)).encode()),
            (b"authorization", f"Bearer {token}".encode()),
        ],
        "client": ("127.0.0.1", 40000),
        "server": ("testserver", 80),
    }

    async def call() -> tuple[int, dict]:
        communicator = ApplicationCommunicator(application, scope)
        await communicator.send_input({"type": "http.request", "body": raw, "more_body": False})
        start = await communicator.receive_output(timeout=30)
        body = await communicator.receive_output(timeout=30)
        await communicator.wait(timeout=5)
        return start["status"], json.loads(body["body"])

    return async_to_sync(call)()


def test_one_trace_from_the_request_through_every_step_of_a_transfer(spans):
    source, target = open_account(100, owner="Tracy Trace"), open_account(owner="Tom Trace")
    status.start_at_head()  # the catch-up below applies only what this test appends from here
    spans.clear()
    token = make_user("tracer", "operator")

    code, answer = post("/api/transfers", {"from_account": str(source), "to_account": str(target), "amount": 30}, token)
    assert code == 202, answer
    transfer = UUID(answer["transfer_id"])
    buckets = {bucket_of(s) for s in (source, target, transfer)}
    wait_for(lambda: [catchup.catch_up_bucket(b) for b in buckets] and finished(transfer), what="the transfer to end")
    assert finished(transfer).status == "completed"

    recorded: list[ReadableSpan] = list(spans.get_finished_spans())
    by_id = {s.context.span_id: s for s in recorded}

    def parent(span: ReadableSpan) -> ReadableSpan | None:
        return by_id.get(span.parent.span_id) if span.parent is not None else None

    def ancestry(span: ReadableSpan) -> list[str]:
        names = []
        current: ReadableSpan | None = span
        while current is not None:
            names.append(current.name)
            current = parent(current)
        return names

    [server] = [s for s in recorded if s.kind == SpanKind.SERVER]
    assert server.name == "POST /api/transfers" and server.parent is None

    # every event of the transfer, on its own stream and on the accounts', carries the request's trace
    mine = events(transfer) + events(source, transfer) + events(target, transfer)
    assert len(mine) == 7
    assert {tracing.trace_id(e.metadata) for e in mine} == {format(server.context.trace_id, "032x")}

    # request -> command -> append
    [append, *_] = [
        s for s in recorded if s.name == "eventstore.append" and s.attributes["eventfold.stream"] == str(transfer)
    ]
    assert ancestry(append) == ["eventstore.append", "command RequestTransfer", "POST /api/transfers"]

    # each event: applied by the projections (their read-model writes inside), handled by the
    # process manager, whose command appends the next event, in the same trace
    def consumers(event_type: str, name: str) -> list[ReadableSpan]:
        return [s for s in recorded if s.name == name and s.attributes["eventfold.event_type"] == event_type]

    [projected] = consumers("ledger.TransferRequested", "project transfers")
    assert parent(projected) is append and projected.kind == SpanKind.CONSUMER
    writes = [s for s in recorded if s.parent is not None and s.parent.span_id == projected.context.span_id]
    assert writes and all(s.kind == SpanKind.CLIENT and s.attributes.get("db.system") == "postgresql" for s in writes)
    assert any(s.name.split()[0] in ("INSERT", "UPDATE") for s in writes), [s.name for s in writes]

    chain = [
        ("ledger.TransferRequested", "command DebitForTransfer"),
        ("ledger.TransferDebited", "command ConfirmTransferDebit"),
        ("ledger.TransferDebitConfirmed", "command CreditFromTransfer"),
        ("ledger.TransferCredited", "command CompleteTransfer"),
        ("ledger.TransferCompleted", "command SettleTransfer"),
    ]
    for event_type, command in chain:
        [handled] = consumers(event_type, "process transfer_process")
        [sent] = [s for s in recorded if s.name == command and parent(s) is handled]
        appended = [s for s in recorded if s.name == "eventstore.append" and parent(s) is sent]
        assert appended, command
        assert ancestry(handled)[-1] == "POST /api/transfers", (event_type, ancestry(handled))
    # the last step, five hops away from the request, is still a descendant of its server span
    [settle] = [s for s in recorded if s.name == "command SettleTransfer"]
    assert ancestry(settle).count("process transfer_process") == 5 and ancestry(settle)[-1] == "POST /api/transfers"
    assert {s.context.trace_id for s in recorded if s.name.startswith(("project ", "process ", "command "))} == {
        server.context.trace_id
    }


def test_the_expiry_of_a_transfer_joins_the_trace_of_its_request(spans):
    source, target = open_account(100, owner="Tracy Trace"), open_account(owner="Tom Trace")
    status.start_at_head()
    token = make_user("tracer", "operator")
    code, answer = post("/api/transfers", {"from_account": str(source), "to_account": str(target), "amount": 30}, token)
    assert code == 202, answer
    transfer = UUID(answer["transfer_id"])
    runner.catch_up(bucket_of(transfer))  # the projections only: the transfer is pending in the read model

    assert expire_transfers(deadline_s=0) == [transfer]
    recorded = list(spans.get_finished_spans())
    [server] = [s for s in recorded if s.kind == SpanKind.SERVER]
    [expiry] = [s for s in recorded if s.name == "expire transfer_expiry"]
    [command] = [s for s in recorded if s.name == "command ExpireTransfer"]
    append = next(s for s in recorded if s.parent and s.parent.span_id == command.context.span_id)
    assert command.parent.span_id == expiry.context.span_id and append.name == "eventstore.append"
    assert {expiry.context.trace_id, command.context.trace_id} == {server.context.trace_id}
    [failed] = [e for e in events(transfer) if e.type == "ledger.TransferFailed"]
    assert tracing.trace_id(failed.metadata) == format(server.context.trace_id, "032x")
