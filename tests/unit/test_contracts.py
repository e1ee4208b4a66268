"""Schema contracts (eventstore/contracts.py): the system check against committed snapshots, both ways."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from io import StringIO
from pathlib import Path
from typing import Literal

import pytest
from django.conf import settings
from django.core import checks
from django.core.management import CommandError, call_command
from pydantic import BaseModel

from eventstore import contracts
from eventstore.management.commands import event_schemas
from eventstore.registry import EventRegistry
from eventstore.registry import registry as app_registry

NAME = "shop.ItemAdded"


class ItemAddedV1(BaseModel):
    sku: str
    quantity: int
    note: str = ""


def committed(tmp_path: Path) -> Path:
    """A snapshot directory holding version 1 of shop.ItemAdded, as `event_schemas --write` writes it."""
    reg = EventRegistry()
    reg.register(NAME, 1)(ItemAddedV1)
    contracts.write(reg, tmp_path)
    return tmp_path


def check(model: type[BaseModel], directory: Path, version: int = 1, upcasters: tuple[int, ...] = ()):
    reg = EventRegistry()
    reg.register(NAME, version)(model)
    for from_version in upcasters:
        reg.upcaster(NAME, from_version)(lambda data: {**data, "colour": "none"})
    return contracts.check_contracts(reg, directory)


def ids(messages: list[checks.CheckMessage]) -> list[str]:
    return [m.id for m in messages if m.id is not None]


def ledger_registry() -> EventRegistry:
    """The app's ledger types alone: other tests in the same process register types of their own."""
    reg = EventRegistry()
    for entry in app_registry.types():
        if entry.name.startswith("ledger."):
            reg.register(entry.name, entry.version, personal_data=entry.personal_data)(entry.model)
            for from_version, fn in entry.upcasters.items():
                reg.upcaster(entry.name, from_version)(fn)
    return reg


def test_the_committed_snapshots_match_the_registered_types():
    assert contracts.check_contracts(ledger_registry(), Path(settings.EVENT_SCHEMA_DIR)) == []
    assert (Path(settings.EVENT_SCHEMA_DIR) / "ledger.FundsDeposited.v1.json").is_file()  # v1 kept beside v2


def test_an_unchanged_type_passes(tmp_path: Path):
    assert check(ItemAddedV1, committed(tmp_path)) == []


def test_an_optional_field_added_passes_with_an_info_to_refresh_the_snapshot(tmp_path: Path):
    class ItemAdded(ItemAddedV1):
        colour: str = "none"

    messages = check(ItemAdded, committed(tmp_path))
    assert ids(messages) == ["eventfold.I001"]
    assert all(m.level < checks.WARNING for m in messages)
    assert "shop.ItemAdded" in messages[0].msg and "'colour'" in messages[0].msg
    assert "event_schemas --write" in messages[0].hint


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ("removed", "field 'note' was removed"),
        ("changed", "field 'quantity' changed its type"),
        ("required", "field 'colour' is required now"),
    ],
)
def test_an_incompatible_change_without_a_version_bump_is_an_error_naming_type_field_and_fix(
    tmp_path: Path, change: str, said: str
):
    class Removed(BaseModel):
        sku: str
        quantity: int

    class Changed(BaseModel):
        sku: str
        quantity: str
        note: str = ""

    class Required(ItemAddedV1):
        colour: str

    model = {"removed": Removed, "changed": Changed, "required": Required}[change]
    messages = check(model, committed(tmp_path))
    assert ids(messages) == ["eventfold.E001"]
    error = messages[0]
    assert error.level == checks.ERROR
    assert error.msg.startswith("shop.ItemAdded: ") and said in error.msg
    assert "version=2" in error.hint and '@upcaster("shop.ItemAdded", from_version=1)' in error.hint
    assert "event_schemas --write" in error.hint


def test_a_narrowed_literal_is_a_changed_type(tmp_path: Path):
    class Before(BaseModel):
        channel: Literal["api", "console"]

    class After(BaseModel):
        channel: Literal["api"]

    reg = EventRegistry()
    reg.register(NAME, 1)(Before)
    contracts.write(reg, tmp_path)
    assert ids(check(After, tmp_path)) == ["eventfold.E001"]


def test_a_version_bump_with_an_upcaster_and_the_old_snapshot_kept_passes(tmp_path: Path):
    class ItemAdded(ItemAddedV1):
        colour: str  # required in version 2: the upcaster supplies it for version 1 events

    directory = committed(tmp_path)
    assert ids(check(ItemAdded, directory, version=2, upcasters=(1,))) == ["eventfold.W001"]  # write v2's
    reg = EventRegistry()
    reg.register(NAME, 2)(ItemAdded)
    reg.upcaster(NAME, 1)(lambda data: {**data, "colour": "none"})
    contracts.write(reg, directory)
    assert sorted(p.name for p in directory.iterdir()) == ["shop.ItemAdded.v1.json", "shop.ItemAdded.v2.json"]
    assert contracts.check_contracts(reg, directory) == []


def test_a_version_bump_without_an_upcaster_is_an_error(tmp_path: Path):
    class ItemAdded(ItemAddedV1):
        colour: str

    messages = check(ItemAdded, committed(tmp_path), version=2)
    assert "eventfold.E002" in ids(messages)
    error = next(m for m in messages if m.id == "eventfold.E002")
    assert "shop.ItemAdded" in error.msg and "no upcaster from version 1" in error.msg
    assert '@upcaster("shop.ItemAdded", from_version=1)' in error.hint


def test_a_bump_that_drops_the_old_snapshot_is_an_error(tmp_path: Path):
    (committed(tmp_path) / "shop.ItemAdded.v1.json").unlink()
    messages = check(ItemAddedV1, tmp_path, version=2, upcasters=(1,))
    assert ids(messages) == ["eventfold.E003", "eventfold.W001"]
    assert "shop.ItemAdded.v1.json" in messages[0].hint


def test_a_renamed_type_is_an_error_naming_the_old_name(tmp_path: Path):
    reg = EventRegistry()
    reg.register("shop.ItemPut", 1)(ItemAddedV1)
    messages = contracts.check_contracts(reg, committed(tmp_path))
    assert ids(messages) == ["eventfold.W001", "eventfold.E004"]
    assert messages[1].msg.startswith("shop.ItemAdded: ") and "no longer a registered event type" in messages[1].msg


def test_a_new_type_without_a_snapshot_is_a_warning(tmp_path: Path):
    messages = check(ItemAddedV1, tmp_path)
    assert ids(messages) == ["eventfold.W001"] and messages[0].level == checks.WARNING


def test_the_command_writes_snapshots_and_refuses_to_hide_an_incompatible_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    directory, committed_dir = tmp_path / "schemas" / "events", Path(settings.EVENT_SCHEMA_DIR)
    shutil.copytree(committed_dir, directory)
    (directory / "ledger.FundsDeposited.v2.json").unlink()
    monkeypatch.setattr(settings, "EVENT_SCHEMA_DIR", directory)
    monkeypatch.setattr(event_schemas, "registry", ledger_registry())
    out = StringIO()
    call_command("event_schemas", "--write", stdout=out)
    assert "wrote schemas/events/ledger.FundsDeposited.v2.json" in out.getvalue()
    assert out.getvalue().count("wrote") == 1  # only the missing one
    snapshot = directory / "ledger.FundsDeposited.v2.json"
    assert snapshot.read_text() == (committed_dir / snapshot.name).read_text()
    call_command("event_schemas", stdout=StringIO())

    text = snapshot.read_text().replace('"reference"', '"memo"')  # as if the model had dropped `memo`
    snapshot.write_text(text)
    with pytest.raises(CommandError, match=r"eventfold\.E001: ledger\.FundsDeposited: field 'memo' was removed"):
        call_command("event_schemas", "--write", stdout=StringIO())
    assert snapshot.read_text() == text  # left as it was


def test_manage_py_check_as_make_lint_runs_it_passes():
    """`manage.py check --fail-level WARNING` in a fresh process, as `make lint` runs it: the committed
    snapshots match, and no database is needed."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "EVENTFOLD_TESTING")}
    done = subprocess.run(
        [sys.executable, "manage.py", "check", "--fail-level", "WARNING"],
        cwd=settings.BASE_DIR,
        env={**env, "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues" in done.stdout
