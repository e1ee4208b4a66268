"""Consumer-driven contracts: each consumer of the integration events keeps, in
tests/contracts/consumers/<consumer>/<event>.v<N>.json, the fields it reads and their JSON types.
The published schemas (the committed snapshots and the models that publish) must give every one
of them, always present and of that type; a change that takes one away fails here, naming the
consumer, the event and the field, before any consumer meets it."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from app.integration import contracts
from app.integration.events import registry

CONSUMERS = Path(__file__).parent / "consumers"
EXPECTATIONS = sorted(CONSUMERS.glob("*/*.json"))


def _expectation(path: Path) -> tuple[str, dict[str, Any]]:
    return path.parent.name, json.loads(path.read_text())


def _committed(event: str, version: int) -> dict[str, Any] | None:
    path = contracts.snapshot_path(contracts.snapshot_dir(), event, version)
    return json.loads(path.read_text())["schema"] if path.exists() else None


def _live(event: str, version: int) -> dict[str, Any] | None:
    found = [e for e in registry.events() if (e.name, e.version) == (event, version)]
    return found[0].json_schema() if found else None


def test_there_are_consumer_expectations_to_check():
    assert {p.parent.name for p in EXPECTATIONS} >= {"accounting", "notifications"}


@pytest.mark.parametrize("path", EXPECTATIONS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_the_published_schemas_give_each_consumer_what_it_reads(path: Path):
    consumer, expectation = _expectation(path)
    for schema in (
        _committed(expectation["event"], expectation["version"]),
        _live(expectation["event"], expectation["version"]),
    ):
        assert contracts.consumer_breaks(expectation, schema, consumer) == []


def _accounting_deposits() -> tuple[dict[str, Any], dict[str, Any]]:
    consumer, expectation = _expectation(CONSUMERS / "accounting" / "ledger.funds_deposited.v1.json")
    schema = _committed("ledger.funds_deposited", 1)
    assert consumer == "accounting" and schema is not None
    return expectation, copy.deepcopy(schema)


def test_a_compatible_change_passes():
    expectation, schema = _accounting_deposits()
    schema["properties"]["channel"] = {"type": "string"}  # a new field, required or not: consumers ignore it
    schema["required"].append("channel")
    schema["properties"]["amount"]["description"] = "reworded"
    assert contracts.consumer_breaks(expectation, schema, "accounting") == []


def test_a_breaking_change_fails_naming_the_consumer_the_event_and_the_field():
    expectation, schema = _accounting_deposits()
    del schema["properties"]["currency"]
    schema["properties"]["amount"]["type"] = "string"  # "12.50" instead of 1250 minor units
    schema["required"].remove("account_id")
    assert contracts.consumer_breaks(expectation, schema, "accounting") == [
        "consumer accounting reads ledger.funds_deposited v1 field 'account_id', which is not always present",
        "consumer accounting reads ledger.funds_deposited v1 field 'amount' as integer, published as string",
        "consumer accounting reads ledger.funds_deposited v1 field 'currency', which is no longer published",
    ]
    assert contracts.consumer_breaks(expectation, None, "accounting") == [
        "consumer accounting: ledger.funds_deposited v1 is not published"
    ]
