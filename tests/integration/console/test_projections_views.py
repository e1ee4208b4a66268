"""The console's projections page: status for everyone, controls for operators only (and
refused to viewers on the server), rebuilds, parked events, and who holds the horizon."""

from __future__ import annotations

import os
import re
import time
from uuid import uuid4

import psycopg
import pytest
from django.test import Client
from django.urls import reverse

from projections import rebuild, tracebacks
from projections.base import projection_registry
from projections.models import BucketCheckpoint, ProjectionState, Rebuild, Skip
from projections.runner import ensure_checkpoints
from tests.conftest import worker_database_url
from tests.integration.console.clients import console_client, htmx

PAGE = reverse("console:projections")
ACTIONS = ["pause", "resume", "retry", "skip", "rebuild"]


def act(name: str, action: str) -> str:
    return reverse("console:projection_action", args=[name, action])


@pytest.fixture(autouse=True)
def no_rebuild_tasks(monkeypatch):
    """Rebuilds are recorded, not run: these tests have no worker (the browser test has one)."""
    monkeypatch.setattr(rebuild, "enqueue", lambda job: None)


def park(name: str, bucket: int = 5, *, blame: bool = True) -> str | None:
    """Park a bucket of a projection as a failing handler would (or, without `blame`, a failure
    no single event caused); returns the event id."""
    ensure_checkpoints(projection_registry.get(name), force=True)
    event_id = str(uuid4()) if blame else None
    BucketCheckpoint.objects.filter(projection=name, bucket=bucket).update(
        failed=True,
        error=f'{tracebacks.HEADER}  File "app/ledger/projections.py", line 7, in requested\nValueError\n',  # redacted
        error_position=7 if blame else None,
        error_event_id=event_id,
    )
    return event_id


def test_a_bucket_parked_without_an_event_to_blame_still_shows(transactional_db):
    park("daily_totals", blame=False)
    page = console_client("vic", "viewer").get(PAGE)
    assert page.status_code == 200 and "a batch failed (no single event to blame)" in page.content.decode()


def test_a_viewer_sees_every_projection_and_no_controls(transactional_db):
    park("transfers")
    page = console_client("vic", "viewer").get(PAGE)
    assert page.status_code == 200
    html = page.content.decode()
    for name in ("account_summary", "account_entries", "daily_totals", "transfers", "transfer_process"):
        assert f'data-projection="{name}"' in html
    assert "process manager" in html and "line 7, in requested\nValueError" in html  # the traceback, for everyone
    assert html.count('class="buckets"') >= 5 and html.count("bucket 5: position 0, parked") == 1
    assert "/projections/transfers/" not in html and "<button" not in html.split("<main>")[1].split("</main>")[0]


def test_operators_get_controls_but_no_rebuild_for_a_process_manager(transactional_db):
    html = console_client("olga", "operator").get(PAGE).content.decode()
    assert act("account_summary", "rebuild") in html and act("account_summary", "pause") in html
    assert act("transfer_process", "pause") in html and act("transfer_process", "rebuild") not in html
    assert 'name="csrfmiddlewaretoken"' in html


@pytest.mark.parametrize("action", ACTIONS)
def test_a_viewer_posting_any_action_gets_403_and_nothing_happens(transactional_db, action):
    park("account_summary")
    viewer = console_client("vic", "viewer")
    assert viewer.post(act("account_summary", action)).status_code == 403
    assert viewer.post(act("account_summary", action), **htmx("projections")).status_code == 403
    assert not Rebuild.objects.exists() and not Skip.objects.exists()
    assert not ProjectionState.objects.filter(paused=True).exists()
    assert BucketCheckpoint.objects.filter(projection="account_summary", failed=True).count() == 1


def test_pause_and_resume_redirect_back_or_answer_the_table(transactional_db):
    operator = console_client("olga", "operator")
    response = operator.post(act("transfers", "pause"))
    assert response.status_code == 302 and response.url == PAGE
    assert ProjectionState.objects.get(name="transfers").paused
    html = operator.get(PAGE).content.decode()
    assert "transfers is paused" in html  # the message, after the redirect
    assert act("transfers", "resume") in html and act("transfers", "pause") not in html
    fragment = operator.post(act("transfers", "resume"), **htmx("projections"))
    assert fragment.status_code == 200 and not ProjectionState.objects.get(name="transfers").paused
    body = fragment.content.decode()
    assert body.lstrip().startswith('<section id="projections"') and "<html" not in body
    assert "transfers resumed." in body


def test_retry_and_skip_a_parked_event(transactional_db):
    operator = console_client("olga", "operator")
    event_id = park("transfers", bucket=9)
    html = operator.get(PAGE).content.decode()
    assert f"traceback-transfers-{event_id}" in html and act("transfers", "retry") in html
    assert operator.post(act("transfers", "skip")).status_code == 302
    skip = Skip.objects.get(projection="transfers")
    assert str(skip.event_id) == event_id and skip.skipped_by.username == "olga" and skip.reason == "console"
    assert not BucketCheckpoint.objects.filter(projection="transfers", failed=True).exists()
    park("transfers", bucket=3)
    assert "1 parked bucket(s) will try" in operator.post(act("transfers", "retry"), follow=True).content.decode()
    assert not BucketCheckpoint.objects.filter(projection="transfers", failed=True).exists()


def test_a_rebuild_is_started_with_who_and_why_and_shows_its_progress_bar(transactional_db):
    operator = console_client("olga", "operator")
    try:
        fragment = operator.post(act("daily_totals", "rebuild"), **htmx("projections")).content.decode()
        job = Rebuild.objects.get(projection="daily_totals", state="running")
        assert job.reason == "console" and job.requested_by.username == "olga"
        assert 'role="progressbar" aria-label="Rebuild of daily_totals"' in fragment
        assert "every 1s" in fragment  # the fallback poll, only while a rebuild runs
        assert act("daily_totals", "rebuild") not in fragment  # no second button meanwhile
        again = operator.post(act("daily_totals", "rebuild"), follow=True).content.decode()
        assert "already running" in again and Rebuild.objects.filter(projection="daily_totals").count() == 1
    finally:
        rebuild.cancel("daily_totals")
    assert "every 1s" not in operator.get(PAGE, **htmx("projections")).content.decode()


def test_a_process_manager_is_never_rebuilt(transactional_db):
    operator = console_client("olga", "operator")
    html = operator.post(act("transfer_process", "rebuild"), follow=True).content.decode()
    assert "transfer_process is a process manager: it is never rebuilt" in html
    assert not Rebuild.objects.exists()


def test_unknown_projections_and_actions_are_404_and_get_is_not_allowed(transactional_db):
    operator = console_client("olga", "operator")
    assert operator.post(act("nope", "pause")).status_code == 404
    assert operator.post(act("transfers", "reset")).status_code == 404
    assert operator.get(act("transfers", "pause")).status_code == 405


def test_csrf_is_enforced_on_the_controls(transactional_db):
    operator = console_client("olga", "operator", enforce_csrf_checks=True)
    assert operator.post(act("transfers", "pause")).status_code == 403
    assert not ProjectionState.objects.filter(name="transfers", paused=True).exists()
    html = operator.get(PAGE).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)
    assert operator.post(act("transfers", "pause"), {"csrfmiddlewaretoken": token}).status_code == 302
    assert ProjectionState.objects.get(name="transfers").paused


def test_the_horizon_panel_names_an_old_open_transaction(transactional_db):
    name = f"console-holder-{os.getpid()}"
    with psycopg.connect(worker_database_url(), application_name=name) as holder:
        holder.execute("SELECT pg_current_xact_id() /* held by the test */").fetchone()
        assert name not in console_client("vic", "viewer").get(PAGE, **htmx("horizon")).content.decode()
        time.sleep(1.1)
        viewer = console_client("vic", "viewer").get(PAGE, **htmx("horizon")).content.decode()
        operator = console_client("olga", "operator").get(PAGE, **htmx("horizon")).content.decode()
        pid = holder.info.backend_pid
        for html in (viewer, operator):
            assert f"pid {pid}" in html and name in html and "idle in transaction" in html
        assert "held by the test" in operator and "held by the test" not in viewer  # query text: operators only
        holder.rollback()


def test_a_fragment_asked_for_after_the_session_ended_sends_the_whole_page_to_log_in(transactional_db):
    plain = Client().get(PAGE)
    assert plain.status_code == 302 and plain.url == f"/login/?next={PAGE}"
    polled = Client().get(PAGE, HTTP_HX_CURRENT_URL=f"http://testserver{PAGE}?x=1", **htmx("projections"))
    assert polled.status_code == 200 and polled["HX-Redirect"] == "/login/?next=%2Fprojections%2F%3Fx%3D1"
    assert b"Log in" not in polled.content  # never the login form inside the table
