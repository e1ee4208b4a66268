"""The ledger's integration events: what each domain event is published as (translations over an
in-memory log), that nothing personal leaves, and the snapshot check of the public schemas."""

from __future__ import annotations

import json
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from django.core import checks
from pydantic import BaseModel, create_model

from app.integration import contracts
from app.integration.events import IntegrationBody, IntegrationRegistry, Message, registry
from app.integration.publisher import headers
from app.ledger import integration
from app.ledger.domain import events as e
from eventstore import hooks
from eventstore.memory import InMemoryEventStore
from eventstore.records import NO_STREAM, RecordedEvent
from projections.processes import process_registry


def _append(store: InMemoryEventStore, stream: UUID, category: str, *events: BaseModel) -> list[RecordedEvent]:
    """A new stream of `events` in the in-memory log (no wake-ups: there is no database)."""
    with hooks.suspended():
        store.append(stream, category, list(events), expected_version=NO_STREAM)
    return store.read_stream(stream)


def _published(store: InMemoryEventStore, event: RecordedEvent) -> list[Message]:
    return registry.translate(event, store)


def test_deposits_and_withdrawals_are_published_with_the_accounts_currency_and_never_the_owner():
    store, account = InMemoryEventStore(), uuid4()
    opened, deposited, frozen, withdrawn = _append(
        store,
        account,
        "account",
        e.AccountOpened(owner="Ann Example", currency="JPY"),
        e.FundsDeposited(amount=1500, reference="salary", channel="api"),
        e.AccountFrozen(reason="check"),
        e.FundsWithdrawn(amount=200),
    )
    [o] = _published(store, opened)
    assert (o.event.routing_key, o.body["account_id"], o.body["currency"]) == (
        "ledger.account_opened.v1",
        str(account),
        "JPY",
    )
    [d] = _published(store, deposited)
    assert d.event.routing_key == "ledger.funds_deposited.v1" and d.message_id == str(deposited.event_id)
    assert d.body == {
        "event_id": str(deposited.event_id),
        "occurred_at": deposited.recorded_at.isoformat().replace("+00:00", "Z"),
        "account_id": str(account),
        "amount": 1500,
        "currency": "JPY",
    }
    assert _published(store, frozen) == []  # internal: not every domain event is public
    [w] = _published(store, withdrawn)
    assert (w.event.name, w.body["amount"], w.body["currency"]) == ("ledger.funds_withdrawn", 200, "JPY")
    said = json.dumps([m.body for m in (o, d, w)])
    assert "Ann" not in said and "salary" not in said and "owner" not in said
    assert "Ann Example" not in repr(integration._OPENINGS)  # what the process keeps of the stream: no name
    assert headers(d) == {"event_type": "ledger.funds_deposited", "schema_version": 1}


def test_each_transfers_outcome_carries_its_accounts_amount_and_currency_from_the_request():
    store, transfer, src, dst = InMemoryEventStore(), uuid4(), uuid4(), uuid4()
    requested = e.TransferRequested(from_account=src, to_account=dst, amount=990, currency="EUR")
    _, _, completed = _append(store, transfer, "transfer", requested, e.TransferDebitConfirmed(), e.TransferCompleted())
    [c] = _published(store, completed)
    assert c.event.routing_key == "ledger.transfer_completed.v1"
    expected = {"transfer_id": str(transfer), "from_account_id": str(src), "to_account_id": str(dst), "amount": 990}
    assert c.body.items() >= {**expected, "currency": "EUR"}.items()

    failed_transfer = uuid4()
    first, failed = _append(
        store, failed_transfer, "transfer", requested, e.TransferFailed(reason="insufficient_funds")
    )
    assert _published(store, first) == []  # a request is not an outcome
    [f] = _published(store, failed)
    assert (f.event.routing_key, f.body["reason"], f.body["currency"]) == (
        "ledger.transfer_failed.v1",
        "insufficient_funds",
        "EUR",
    )


def test_the_publisher_is_a_process_manager_of_exactly_the_translated_types():
    publisher = process_registry.get("integration_publisher")
    assert publisher.kind == "process"
    assert publisher.event_types == [
        "ledger.AccountOpened",
        "ledger.FundsDeposited",
        "ledger.FundsWithdrawn",
        "ledger.TransferCompleted",
        "ledger.TransferFailed",
    ]
    assert [x.routing_key for x in registry.events()] == [
        "ledger.account_opened.v1",
        "ledger.funds_deposited.v1",
        "ledger.funds_withdrawn.v1",
        "ledger.transfer_completed.v1",
        "ledger.transfer_failed.v1",
    ]


# -- the schema snapshots -----------------------------------------------------------------------
def _registry_with(model: type[IntegrationBody], version: int = 1) -> IntegrationRegistry:
    found = IntegrationRegistry()
    found.integration_event("shop.item_added", version)(model)
    return found


class ItemAddedV1(IntegrationBody):
    sku: str
    quantity: int


def _ids(found: list[checks.CheckMessage]) -> list[str | None]:
    return [m.id for m in found]


def test_the_committed_snapshots_match_the_published_events():
    assert contracts.check_contracts(registry, contracts.snapshot_dir()) == []


@pytest.mark.parametrize(
    ("changed", "expected"),
    [
        ({"sku": (str, ...), "quantity": (int, ...), "note": (str, "")}, ["eventfold.I002"]),  # a field added
        ({"sku": (str, ...), "quantity": (int, ...), "size": (int, ...)}, ["eventfold.I002"]),  # required too
        ({"sku": (str, ...)}, ["eventfold.E005"]),  # quantity removed
        ({"sku": (str, ...), "quantity": (str, ...)}, ["eventfold.E005"]),  # retyped
        ({"sku": (str, ...), "quantity": (int | None, None)}, ["eventfold.E005"]),  # no longer always there
    ],
)
def test_the_check_refuses_what_consumers_cannot_follow_at_the_same_version(tmp_path: Path, changed, expected):
    contracts.write(_registry_with(ItemAddedV1), tmp_path)
    assert contracts.check_contracts(_registry_with(ItemAddedV1), tmp_path) == []
    model = create_model("ItemAddedV1", __base__=IntegrationBody, **changed)
    found = contracts.check_contracts(_registry_with(model), tmp_path)
    assert _ids(found) == expected, [m.msg for m in found]


def test_a_missing_snapshot_warns_and_a_snapshot_of_an_event_no_longer_published_is_an_error(tmp_path: Path):
    assert _ids(contracts.check_contracts(_registry_with(ItemAddedV1), tmp_path)) == ["eventfold.W002"]
    contracts.write(_registry_with(ItemAddedV1), tmp_path)
    assert _ids(contracts.check_contracts(IntegrationRegistry(), tmp_path)) == ["eventfold.E006"]


def test_a_stream_without_its_opening_event_is_refused_saying_what_is_missing():
    """A deposit in a stream that does not start with its AccountOpened (written by hand, or by an
    import): no currency to publish. The translation says so (the publisher parks on it), never
    a bare KeyError."""
    store, account = InMemoryEventStore(), uuid4()
    _, second = _append(store, account, "account", e.FundsDeposited(amount=5), e.FundsDeposited(amount=7))
    with pytest.raises(integration.NoOpening) as refused:
        _published(store, second)
    said = str(refused.value)
    assert f"{account} starts with ledger.FundsDeposited (version 1)" in said
    assert "does not carry currency" in said and f"position {second.position}" in said
