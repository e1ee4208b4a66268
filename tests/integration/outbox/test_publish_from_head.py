"""`manage.py publish_from_head`: a new publisher that must not publish the history already in the log."""

from __future__ import annotations

from io import StringIO
from uuid import uuid4

from django.core.management import call_command

from app.ledger import handlers
from app.ledger.commands import CommandContext
from projections import processes
from projections.recovery import processes_behind


def test_the_publisher_moves_to_the_head_and_publishes_what_comes_next(transactional_db):
    processes.ensure("integration_publisher", force=True)  # at zero, as on a first deployment (the flush took them)
    account = handlers.account_open(
        account_id=uuid4(), owner="Hedda Head", currency="EUR", ctx=CommandContext(actor="t")
    )
    handlers.account_deposit(account_id=account.stream_id, amount=5, ctx=CommandContext(actor="t"))
    assert "integration_publisher" in processes_behind()  # at zero: it would publish the history
    out = StringIO()
    call_command("publish_from_head", stdout=out)
    assert "at the head of the log" in out.getvalue()
    assert "integration_publisher" not in processes_behind()
    handlers.account_deposit(account_id=account.stream_id, amount=6, ctx=CommandContext(actor="t"))
    assert "integration_publisher" in processes_behind()  # what comes next is published


def test_the_publisher_is_listed_and_controlled_as_a_process_manager(operator):
    """No second place to watch it: `/api/projections` has its lag, and pause and resume work."""
    handlers.account_open(account_id=uuid4(), owner="Lena Listed", currency="EUR", ctx=CommandContext(actor="t"))
    processes.ensure("integration_publisher", force=True)
    listed = {p["name"]: p for p in operator.get("/api/projections").json()}
    publisher = listed["integration_publisher"]
    assert publisher["kind"] == "process" and publisher["lag"] >= 1
    assert operator.post("/api/projections/integration_publisher/pause").json()["status"] == "paused"
    assert processes.run("integration_publisher", 0) == "paused"
    assert operator.post("/api/projections/integration_publisher/resume").status_code == 200
