"""A keyed command (Idempotency-Key: it runs in a transaction) that loses the race for its stream
is run again in a new transaction, never inside the one that lost.

The failed append gave that transaction its id; a rival that appends afterwards gets a newer id.
Had the command tried again in the old transaction, its event would carry the older id and be
read before the rival's (the log's read order is by transaction id first): the stream's versions
out of order, and the balance projection, which skips a version it has passed, would lose the
rival's money. The fault soak found exactly that: a debit missing from a balance."""

from __future__ import annotations

import threading
from uuid import uuid4

from django.db import connection, connections

from app.ledger import handlers
from app.ledger.commands import CommandContext
from app.ledger.models import AccountSummary
from eventstore.repository import Repository
from tests.integration.api.conftest import Api, make_user
from tests.integration.api.test_read_models import catch_up_all

rival = threading.local()


def rival_deposit(account, amount: int) -> None:
    """A deposit by someone else, committed at once, from another thread (its own connection)."""

    def run() -> None:
        rival.active = True
        try:
            handlers.account_deposit(account_id=account, amount=amount, ctx=CommandContext(actor="rival"))
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()


def test_a_keyed_command_that_loses_a_race_runs_again_in_a_new_transaction(transactional_db, monkeypatch):
    account = handlers.account_open(
        account_id=uuid4(), owner="Ann Racer", currency="EUR", ctx=CommandContext(actor="t")
    ).stream_id
    rivals = [10, 20]  # the first makes our first append lose; the second lands before our retry's
    save = Repository.save

    def racing_save(self, aggregate, **kwargs):  # type: ignore[no-untyped-def]
        if aggregate.id == account and rivals and not getattr(rival, "active", False):
            rival_deposit(account, rivals.pop(0))
        return save(self, aggregate, **kwargs)

    monkeypatch.setattr(Repository, "save", racing_save)
    api = Api(make_user("olga", "operator"))
    response = api.post(f"/api/accounts/{account}/deposits", {"amount": 5}, **{"Idempotency-Key": "race-1"})
    assert response.status_code == 200, response.content
    assert response.json()["version"] == 4  # after the rivals' 2 and 3

    with connection.cursor() as cur:
        cur.execute(
            "SELECT version FROM eventstore_event WHERE stream_id = %s ORDER BY tx_id, global_position", [account]
        )
        assert [v for (v,) in cur.fetchall()] == [1, 2, 3, 4]  # read order is version order
    catch_up_all()
    assert AccountSummary.objects.get(account_id=account).balance == 10 + 20 + 5
