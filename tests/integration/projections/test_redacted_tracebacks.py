"""A parked event's traceback is shown to every viewer (console and GET /api/projections), and
an exception's message may quote what the handler was given: decrypted personal data (a pydantic
error's input_value=, an f-string with a payload field) or a secret. So what is recorded is where
it failed (the exception types and the stack), never a message or a note; the full text goes to
the worker's log only. The same for a process manager's parked event and a failed rebuild."""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID, uuid4

import pytest
from django.urls import reverse
from django.utils.html import escape
from pydantic import TypeAdapter, ValidationError

from app.ledger.domain.events import TransferRequested
from eventstore.records import RecordedEvent, bucket_of
from eventstore.store import EventStore
from projections import processes, rebuild, runner, status
from projections.base import projection_registry
from projections.models import BucketCheckpoint, Rebuild
from projections.processes import process_registry
from tests.integration.api.conftest import Api, make_user, open_account
from tests.integration.console.clients import console_client

OWNER = "Zelda Quartermain-Okonkwo"
SECRET = "hunter2-S3cr3t-Pa55"  # as in a connection string an exception might quote
LEAKS = (OWNER, "Quartermain", SECRET, "input_value")


def fail_with_personal_data(owner: str) -> None:
    """What a buggy handler does: its exceptions quote the owner and a secret."""
    # A pydantic error quotes the value it refused (input_value=...); this line itself is shown.
    try:
        TypeAdapter(int).validate_python(owner)
    except ValidationError as exc:
        failure = RuntimeError(f"could not file {owner} via postgresql://ledger:{SECRET}@db/eventfold")
        failure.add_note(f"while handling the account of {owner}")
        raise failure from exc


def opened_account(monkeypatch: pytest.MonkeyPatch) -> UUID:
    """An account opened by OWNER, whose event every projection is to apply next (the others'
    earlier events in the log are not this test's), with account_summary's handler broken."""
    status.start_at_head()
    summary = projection_registry.get("account_summary")
    monkeypatch.setattr(
        summary,
        summary.handlers["ledger.AccountOpened"],
        lambda event, cursor: fail_with_personal_data(event.data["owner"]),
    )
    return UUID(open_account(Api(make_user("olga", "operator")), owner=OWNER))


def what_viewers_see(projection: str) -> tuple[dict[str, Any], str, str]:
    """The projection in GET /api/projections, that response and the console's page, as a viewer."""
    response = Api(make_user("vic", "viewer")).get("/api/projections")
    assert response.status_code == 200
    listed = next(p for p in response.json() if p["name"] == projection)
    page = console_client("val", "viewer").get(reverse("console:projections"))
    assert page.status_code == 200
    return listed, response.content.decode(), page.content.decode()


def assert_no_leak(*texts: str) -> None:
    for text in texts:
        for leak in LEAKS:
            assert leak not in text


def test_a_parked_events_traceback_names_where_it_failed_but_quotes_nothing(transactional_db, monkeypatch, caplog):
    account = opened_account(monkeypatch)
    with caplog.at_level(logging.ERROR, logger="projections.runner"):
        outcomes = runner.catch_up(bucket_of(account))
    assert outcomes["account_summary"] == "failed"
    row = BucketCheckpoint.objects.get(projection="account_summary", bucket=bucket_of(account))
    assert row.failed and row.error

    listed, api_text, html = what_viewers_see("account_summary")
    traceback = listed["error"]["traceback"]
    assert listed["status"] == "failed" and listed["error"]["position"] == row.error_position
    # where: both exceptions of the chain by type, and the stack down to the handler's frame
    assert "pydantic_core._pydantic_core.ValidationError" in traceback and "RuntimeError" in traceback
    assert "direct cause of the following exception" in traceback
    assert "in fail_with_personal_data" in traceback and "test_redacted_tracebacks.py" in traceback
    assert escape(traceback) in html
    assert_no_leak(row.error, api_text, html)
    # operators see the same; the full text is in the worker's log, for whoever keeps that log
    operator_html = console_client("olga", "operator").get(reverse("console:projections")).content.decode()
    assert_no_leak(operator_html)
    assert any(OWNER in str(r.exc_info[1]) for r in caplog.records if r.exc_info)


def test_a_process_managers_parked_event_quotes_nothing_either(transactional_db, monkeypatch):
    status.start_at_head()
    transfers = process_registry.get("transfer_process")

    def requested(event: RecordedEvent) -> None:
        fail_with_personal_data(OWNER)  # as if it had loaded the source account's owner

    monkeypatch.setattr(transfers, transfers.handlers["ledger.TransferRequested"], requested)
    transfer = uuid4()
    event = TransferRequested(from_account=uuid4(), to_account=uuid4(), amount=5, currency="EUR")
    EventStore().append(transfer, "transfer", [event])
    assert processes.run("transfer_process", bucket_of(transfer)) == "failed"
    row = BucketCheckpoint.objects.get(projection="transfer_process", bucket=bucket_of(transfer))
    listed, api_text, html = what_viewers_see("transfer_process")
    assert "RuntimeError" in listed["error"]["traceback"] and "in requested" in listed["error"]["traceback"]
    assert_no_leak(row.error, api_text, html)


def test_a_failed_rebuilds_error_quotes_nothing_either(transactional_db, monkeypatch):
    summary = projection_registry.get("account_summary")
    open_account(Api(make_user("olga", "operator")), owner=OWNER)
    monkeypatch.setattr(summary, "rebuild_batch", lambda events, cursor, memo: fail_with_personal_data(OWNER))
    job = rebuild.start("account_summary", reason="test", run_in_worker=False)
    while rebuild.run_slice(job.pk) == "more":
        pass
    job.refresh_from_db()
    assert job.state == Rebuild.State.FAILED and "RuntimeError" in job.error
    listed, api_text, html = what_viewers_see("account_summary")
    assert "RuntimeError" in listed["last_rebuild"]["error"] and "Why the rebuild failed" in html
    assert_no_leak(job.error, api_text, html)


def test_a_traceback_recorded_before_redaction_is_withheld(transactional_db):
    status.start_at_head()
    legacy = (
        "Traceback (most recent call last):\n"
        '  File "app/ledger/projections.py", line 50, in opened\n'
        f"ValueError: bad owner {OWNER!r}, token {SECRET}\n"
    )
    BucketCheckpoint.objects.filter(projection="transfers", bucket=3).update(
        failed=True, error=legacy, error_event_id=uuid4(), error_position=7
    )
    listed, api_text, html = what_viewers_see("transfers")
    assert listed["error"]["traceback"].startswith("(recorded before")
    assert_no_leak(api_text, html)
