"""The integration events' public schemas, committed as snapshots, and the checks that keep them
what consumers were promised.

`manage.py integration_schemas --write` writes `schemas/integration/<name>.v<N>.json` for each
registered integration event; the system check (`manage.py check`, in `make lint` and CI)
compares the models with them. Consumers read these messages in other services, so the rules
are the reader's side of eventstore/contracts.py's:

- at the same version, a field removed, a field's type changed, or a field no longer always
  present (required before, optional now): E005. Publish version N+1 beside version N instead
  (a second translation), and keep N until its consumers have moved.
- snapshots of an integration event no longer registered at that version: E006 (its consumers'
  messages stopped coming).
- no snapshot for a registered version: W002 (`check --fail-level WARNING` fails on it).
- a compatible change (a field added, a description changed): I002, refresh the snapshot.

`consumer_breaks` checks consumer expectations (tests/contracts/consumers/<consumer>/<event>.json:
the fields each consumer reads and their JSON types) against the schemas: the consumer-driven
contract tests.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core import checks

from app.integration.events import IntegrationEvent, IntegrationRegistry
from app.integration.events import registry as default_registry
from eventstore.contracts import dump, stored_snapshots

WRITE = "run `python manage.py integration_schemas --write` and commit the file"


def snapshot_dir() -> Path:
    return Path(settings.INTEGRATION_SCHEMA_DIR)


def snapshot_path(directory: Path, name: str, version: int) -> Path:
    return directory / f"{name}.v{version}.json"


def snapshot_of(entry: IntegrationEvent) -> dict[str, Any]:
    return {
        "integration_event": entry.name,
        "schema_version": entry.version,
        "routing_key": entry.routing_key,
        "schema": entry.json_schema(),
    }


# -- what a reader of a schema depends on ---------------------------------------------------
def fields(schema: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """Each top-level field's JSON type (`$ref`s resolved; "object" for a nested model) and
    whether every message has it."""
    defs = schema.get("$defs", {})
    required = set(schema.get("required", ()))
    found = {}
    for name, node in schema.get("properties", {}).items():
        ref = node.get("$ref", "")
        if ref.startswith("#/$defs/"):
            node = defs.get(ref.removeprefix("#/$defs/"), {})
        kind = node.get("type") or "+".join(sorted(str(o.get("type")) for o in node.get("anyOf", ())))
        found[name] = (kind or "any", name in required)
    return found


@dataclass(frozen=True)
class Break:
    field: str
    says: str


def breaks(old: dict[str, Any], new: dict[str, Any]) -> list[Break]:
    """What a reader of `old` cannot follow in `new`: a field removed, retyped, or made optional."""
    before, after = fields(old), fields(new)
    found = []
    for name, (kind, required) in before.items():
        if name not in after:
            found.append(Break(name, f"field {name!r} was removed"))
        elif after[name][0] != kind:
            found.append(Break(name, f"field {name!r} changed its type from {kind} to {after[name][0]}"))
        elif required and not after[name][1]:
            found.append(Break(name, f"field {name!r} is no longer always present"))
    return found


# -- the system check -----------------------------------------------------------------------
def check_contracts(registry: IntegrationRegistry, directory: Path) -> list[checks.CheckMessage]:
    snapshots = stored_snapshots(directory)
    registered = {(e.name, e.version) for e in registry.events()}
    messages: list[checks.CheckMessage] = []
    for entry in registry.events():
        messages.extend(_check_event(entry, snapshots.get(entry.name, {})))
    for name, versions in sorted(snapshots.items()):
        for version in sorted(v for v in versions if (name, v) not in registered):
            messages.append(
                checks.Error(
                    f"integration event {name} v{version} has a snapshot but is no longer published, so its "
                    "consumers stop receiving it",
                    hint=f"Keep publishing {name} v{version} (its model and translation) until no consumer reads "
                    f"it; then delete {snapshot_path(directory, name, version)} in the same change.",
                    id="eventfold.E006",
                )
            )
    return messages


def _check_event(entry: IntegrationEvent, versions: dict[int, Path]) -> list[checks.CheckMessage]:
    name, version = entry.name, entry.version
    path = versions.get(version)
    if path is None:
        return [
            checks.Warning(
                f"integration event {name} v{version} has no schema snapshot",
                hint=f"Write {snapshot_path(snapshot_dir(), name, version)}: {WRITE}.",
                id="eventfold.W002",
            )
        ]
    committed = json.loads(path.read_text())["schema"]
    found = breaks(committed, entry.json_schema())
    messages: list[checks.CheckMessage] = [
        checks.Error(
            f"integration event {name} v{version}: {b.says}, while it stays at version {version}: its consumers "
            "cannot follow",
            hint=f"Undo that change, or publish {name} v{version + 1} (a new model and translation) beside "
            f"v{version}, which stays until its consumers have moved; then {WRITE}.",
            id="eventfold.E005",
        )
        for b in found
    ]
    if not found and committed != entry.json_schema():
        messages.append(
            checks.Info(
                f"integration event {name} v{version}: a compatible change to its schema",
                hint=f"Refresh the snapshot: {WRITE}.",
                id="eventfold.I002",
            )
        )
    return messages


def check(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """The Django system check (no database needed)."""
    return check_contracts(default_registry, snapshot_dir())


def write(registry: IntegrationRegistry, directory: Path) -> list[Path]:
    """Write every registered integration event's snapshot that is missing or stale."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for entry in registry.events():
        path = snapshot_path(directory, entry.name, entry.version)
        text = dump(snapshot_of(entry))
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            written.append(path)
    return written


# -- consumer-driven contracts --------------------------------------------------------------
def consumer_breaks(expectation: dict[str, Any], schema: dict[str, Any] | None, consumer: str) -> list[str]:
    """What in `schema` fails a consumer's expectation (`{"event", "version", "reads": {field:
    JSON type}}`), each said naming the consumer, the event and the field."""
    event = f"{expectation['event']} v{expectation['version']}"
    if schema is None:
        return [f"consumer {consumer}: {event} is not published"]
    published = fields(schema)
    said = []
    for field, kind in sorted(expectation["reads"].items()):
        if field not in published:
            said.append(f"consumer {consumer} reads {event} field {field!r}, which is no longer published")
        elif published[field][0] != kind:
            said.append(
                f"consumer {consumer} reads {event} field {field!r} as {kind}, published as {published[field][0]}"
            )
        elif not published[field][1]:
            said.append(f"consumer {consumer} reads {event} field {field!r}, which is not always present")
    return said
