"""A real schema upgrade: deposits stored as schema version 1 (no `channel`), written the way the
append path wrote them before FundsDeposited became version 2, read through every reader: the
store's reads, the aggregate, the projections (catch-up on the real worker, and a rebuild), the
REST API and the console's event page. The rows themselves stay as they were."""

from __future__ import annotations

import json
from typing import Annotated
from uuid import UUID, uuid4

from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.urls import reverse
from pydantic import BaseModel, ConfigDict, Field

from app.ledger import handlers
from app.ledger.commands import CommandContext
from app.ledger.domain.account import Account
from app.ledger.models import AccountSummary
from eventstore.records import RecordedEvent
from eventstore.registry import EventRegistry
from eventstore.repository import Repository
from eventstore.store import EventStore
from projections import runner
from projections.verify import verify
from tests.conftest import wait_for
from tests.integration.api.conftest import Api, make_user
from tests.integration.console.test_streams_views import client_for

V1_AMOUNTS = (1_500, 2_500)


class FundsDepositedV1(BaseModel):
    """FundsDeposited as schema version 1 declared it (schemas/events/ledger.FundsDeposited.v1.json)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    amount: Annotated[int, Field(gt=0)]
    reference: str = ""


def v1_store() -> EventStore:
    """The store as it appended before the upgrade: FundsDeposited on the wire as version 1."""
    before = EventRegistry()
    before.register("ledger.FundsDeposited", 1)(FundsDepositedV1)
    return EventStore(registry=before)


def stored_rows(stream_id: UUID) -> list[tuple[str, int, dict]]:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT event_type, schema_version, data FROM eventstore_event WHERE stream_id = %s ORDER BY version",
            [stream_id],
        )
        return [(t, v, d if isinstance(d, dict) else json.loads(d)) for t, v, d in cur.fetchall()]


def deposits(events: list[RecordedEvent]) -> list[RecordedEvent]:
    return [e for e in events if e.type == "ledger.FundsDeposited"]


def test_v1_deposits_stored_before_the_upgrade_read_as_v2_everywhere(worker):
    account_id = uuid4()
    start = EventStore().head()
    handlers.account_open(account_id=account_id, owner="Upgraded", currency="EUR", ctx=CommandContext(actor="test"))
    v1_store().append(
        account_id,
        "account",
        [FundsDepositedV1(amount=a, reference=f"v1 #{i}") for i, a in enumerate(V1_AMOUNTS)],
        expected_version=1,
    )
    before = stored_rows(account_id)
    assert before[1:] == [
        ("ledger.FundsDeposited", 1, {"amount": 1_500, "reference": "v1 #0"}),
        ("ledger.FundsDeposited", 1, {"amount": 2_500, "reference": "v1 #1"}),
    ]
    operator = Api(make_user("olga", "operator"))
    answer = operator.post(f"/api/accounts/{account_id}/deposits", {"amount": 700})  # a v2 deposit, by the API
    assert answer.status_code == 200, answer.content

    # the store: read_stream and read_all
    store = EventStore()
    read = deposits(store.read_stream(account_id))
    assert [(e.schema_version, e.data["channel"], e.stored_version) for e in read] == [
        (2, "unknown", 1),
        (2, "unknown", 1),
        (2, "api", None),
    ]
    assert read[0].raw_data == {"amount": 1_500, "reference": "v1 #0"}
    assert read[0].stored == (1, {"amount": 1_500, "reference": "v1 #0"})
    assert read[2].stored == (2, read[2].data) and not read[2].upcast
    page = store.read_all(start, categories=["account"], limit=1000)
    assert [e.data for e in deposits(page.events) if e.stream_id == account_id] == [e.data for e in read]

    # the aggregate
    account = Repository(Account).load(account_id)
    assert account.state.balance == sum(V1_AMOUNTS) + 700

    # the projections, caught up by the worker, and rebuilt from position zero
    wait_for(lambda: not runner.lagging_buckets(), timeout=60, what="catch-up")
    assert AccountSummary.objects.get(account_id=account_id).balance == sum(V1_AMOUNTS) + 700
    viewer = Api(make_user("vic", "viewer"))
    entries = viewer.get(f"/api/accounts/{account_id}/entries").json()["items"]
    assert sorted(e["amount"] for e in entries if e["kind"] == "deposit") == [700, 1_500, 2_500]
    call_command("rebuild_projection", "account_summary")
    assert AccountSummary.objects.get(account_id=account_id).balance == sum(V1_AMOUNTS) + 700
    assert verify("account_summary").clean

    # the REST API's log
    items = viewer.get("/api/events", type="ledger.FundsDeposited", after=start.encode(), limit=1000).json()["items"]
    ours = [i for i in items if i["stream_id"] == str(account_id)]
    assert [(i["schema_version"], i["data"]["channel"]) for i in ours] == [(2, "unknown"), (2, "unknown"), (2, "api")]

    # the console's event page: the upcast data beside the row as stored
    client: Client = client_for("viewer")
    page_html = client.get(reverse("console:event", args=[read[0].event_id])).content.decode()
    assert "stored as version 1, upcast on read" in page_html
    data_shown = page_html.split('id="event-data">')[1].split("</pre>")[0]
    raw_shown = page_html.split('id="event-raw-data">')[1].split("</pre>")[0]
    assert "channel" in data_shown and "unknown" in data_shown
    assert "channel" not in raw_shown and "v1 #0" in raw_shown
    v2_html = client.get(reverse("console:event", args=[read[2].event_id])).content.decode()
    assert 'id="event-raw-data"' not in v2_html and "upcast on read" not in v2_html

    assert stored_rows(account_id)[:3] == before  # every read left the stored rows as they were


def test_a_console_deposit_says_console(worker):
    account_id = uuid4()
    handlers.account_open(account_id=account_id, owner="Consoled", currency="EUR", ctx=CommandContext(actor="test"))
    client = client_for("operator")
    url = reverse("console:account_action", args=[account_id, "deposit"])
    answer = client.post(url, {"amount": "12.50", "reference": "", "command_id": str(uuid4())})
    assert answer.status_code in (200, 302, 303), answer.content[:500]
    [deposit] = deposits(EventStore().read_stream(account_id))
    assert (deposit.data["amount"], deposit.data["channel"], deposit.schema_version) == (1250, "console", 2)
