"""The event registry and value types, without I/O."""

import subprocess
import sys
from uuid import UUID

import pytest
from pydantic import BaseModel

from eventstore.errors import InvalidEventData, UnknownEventType, UpcastError
from eventstore.records import Checkpoint, bucket_of
from eventstore.registry import EventRegistry


def make_registry() -> tuple[EventRegistry, type[BaseModel]]:
    reg = EventRegistry()

    @reg.register("shop.ItemAdded", version=3)
    class ItemAdded(BaseModel):
        sku: str
        quantity: int
        note: str = ""

    @reg.upcaster("shop.ItemAdded", from_version=1)
    def v1_to_v2(data: dict) -> dict:
        return {"sku": data["item"], "quantity": data.get("qty", 1)}

    @reg.upcaster("shop.ItemAdded", from_version=2)
    def v2_to_v3(data: dict) -> dict:
        return {**data, "note": "upcast"}

    return reg, ItemAdded


def test_upcasting_runs_the_chain_to_the_current_version():
    reg, model = make_registry()
    assert reg.upcast("shop.ItemAdded", 1, {"item": "A", "qty": 2}) == (
        3,
        {"sku": "A", "quantity": 2, "note": "upcast"},
    )
    assert reg.upcast("shop.ItemAdded", 3, {"sku": "B", "quantity": 1}) == (3, {"sku": "B", "quantity": 1})
    assert reg.decode("shop.ItemAdded", {"sku": "B", "quantity": 1}) == model(sku="B", quantity=1)
    assert reg.has_history


def test_a_gap_in_the_chain_is_an_error():
    reg = EventRegistry()

    @reg.register("shop.Gone", version=2)
    class Gone(BaseModel):
        x: int

    with pytest.raises(UpcastError):
        reg.upcast("shop.Gone", 1, {"x": 1})


def test_validation_names_the_fields():
    reg, _ = make_registry()
    with pytest.raises(InvalidEventData) as err:
        reg.validate("shop.ItemAdded", {"sku": 5})
    fields = {e["loc"][0] for e in err.value.errors}
    assert fields == {"sku", "quantity"}


def test_names_are_stable_and_unique():
    reg, model = make_registry()
    assert reg.of(model(sku="a", quantity=1)).name == "shop.ItemAdded"
    with pytest.raises(ValueError):

        @reg.register("shop.ItemAdded")
        class Other(BaseModel):
            y: int

    with pytest.raises(UnknownEventType):
        reg.get("shop.Missing")
    assert [t.name for t in reg.types()] == ["shop.ItemAdded"]
    assert reg.get("shop.ItemAdded").json_schema()["properties"]["sku"]["type"] == "string"


def test_checkpoint_cursor_round_trip_and_rejects_garbage():
    cp = Checkpoint(123456789, 42)
    assert Checkpoint.decode(cp.encode()) == cp
    for bad in ["", "!!", "MTIz", Checkpoint(1, 2).encode() + "x"]:
        with pytest.raises(ValueError):
            Checkpoint.decode(bad)


def test_buckets_come_from_the_uuid_not_from_the_process_hash_seed():
    sid = UUID("0c6f7f1e-5a2b-4c1d-9e8f-0123456789ab")
    code = f"from uuid import UUID; from eventstore.records import bucket_of; print(bucket_of(UUID('{sid}')))"
    other_process = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
        cwd=".",
    )
    assert int(other_process.stdout) == bucket_of(sid) == 0xAB % 64
