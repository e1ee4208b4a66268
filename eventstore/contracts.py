"""Schema contracts: each event type's JSON schema, per schema version, committed as a snapshot.

The log keeps every event as it was written, and projections, process managers and other readers
depend on its fields. A snapshot (`<dir>/<type>.v<N>.json`, written by `manage.py event_schemas
--write`) records what version N of a type looks like; the system check `eventfold.E001`-`E004`
(registered by eventstore/apps.py, run by `manage.py check`) compares the registered models with
the snapshots and refuses a change that stored events or their readers cannot follow:

- a field removed, a field's type changed, a new required field (one without a default), while
  the type keeps its schema version: E001. Bump the version and register an upcaster instead.
- a version above 1 without an upcaster from each older version: E002.
- a snapshot of an older version missing (the history a bump must keep): E003.
- snapshots of a type that is no longer registered (removed or renamed): E004.

A compatible change (an optional field added, a description changed) passes with an Info
(`eventfold.I001`) asking to refresh the snapshot; a type whose current version has no snapshot
yet is a Warning (`eventfold.W001`), which `check --fail-level WARNING` (in `make lint`) fails
on, so snapshots are committed with the change that makes them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core import checks

from eventstore.registry import EventRegistry, EventType
from eventstore.registry import registry as default_registry

SNAPSHOT_NAME = re.compile(r"^(?P<type>.+)\.v(?P<version>[1-9][0-9]*)\.json$")
IGNORED = frozenset({"title", "description", "examples", "default"})  # what readers do not depend on
WRITE = "run `python manage.py event_schemas --write` and commit the file"


def snapshot_dir() -> Path:
    return Path(settings.EVENT_SCHEMA_DIR)


def snapshot_path(directory: Path, name: str, version: int) -> Path:
    return directory / f"{name}.v{version}.json"


def snapshot_of(entry: EventType) -> dict[str, Any]:
    """What a snapshot file holds for the type's current version."""
    return {
        "event_type": entry.name,
        "schema_version": entry.version,
        "personal_data": list(entry.personal_data),
        "schema": entry.json_schema(),
    }


def dump(snapshot: dict[str, Any]) -> str:
    return json.dumps(snapshot, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def stored_snapshots(directory: Path) -> dict[str, dict[int, Path]]:
    """Snapshot files by type name and schema version."""
    found: dict[str, dict[int, Path]] = {}
    if directory.is_dir():
        for path in sorted(directory.iterdir()):
            match = SNAPSHOT_NAME.match(path.name)
            if match:
                found.setdefault(match["type"], {})[int(match["version"])] = path
    return found


# -- comparing two schemas ----------------------------------------------------------------------
@dataclass(frozen=True)
class Difference:
    field: str
    kind: str  # "removed", "changed", "required" (incompatible) or "added" (compatible)

    @property
    def compatible(self) -> bool:
        return self.kind == "added"

    def says(self) -> str:
        return {
            "removed": f"field {self.field!r} was removed",
            "changed": f"field {self.field!r} changed its type",
            "required": f"field {self.field!r} is required now (stored events may not have it)",
            "added": f"optional field {self.field!r} was added",
        }[self.kind]


def _plain(node: Any, defs: dict[str, Any], depth: int = 0) -> Any:
    """A schema with `$ref`s resolved and what readers do not depend on left out."""
    if depth > 20:
        return node
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _plain(defs.get(ref.removeprefix("#/$defs/"), {}), defs, depth + 1)
        return {k: _plain(v, defs, depth + 1) for k, v in node.items() if k not in IGNORED and k != "$defs"}
    if isinstance(node, list):
        return [_plain(v, defs, depth + 1) for v in node]
    return node


def _fields(schema: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    defs = schema.get("$defs", {})
    properties = {name: _plain(s, defs) for name, s in schema.get("properties", {}).items()}
    return properties, set(schema.get("required", ()))


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[Difference]:
    """How schema `new` differs from `old`, field by field (top-level fields; a nested model's
    change counts as its field's type changing)."""
    old_fields, old_required = _fields(old)
    new_fields, new_required = _fields(new)
    found = [Difference(f, "removed") for f in old_fields if f not in new_fields]
    for name, shape in new_fields.items():
        if name not in old_fields:
            found.append(Difference(name, "required" if name in new_required else "added"))
        elif shape != old_fields[name]:
            found.append(Difference(name, "changed"))
        elif name in new_required and name not in old_required:
            found.append(Difference(name, "required"))
    return found


# -- the system check ---------------------------------------------------------------------------
def check_contracts(registry: EventRegistry, directory: Path) -> list[checks.CheckMessage]:
    """Every registered type against its snapshots in `directory` (see the module docstring)."""
    snapshots = stored_snapshots(directory)
    messages: list[checks.CheckMessage] = []
    for entry in registry.types():
        messages.extend(_check_type(entry, snapshots.get(entry.name, {}), directory))
    for name in sorted(set(snapshots) - {t.name for t in registry.types()}):
        versions = ", ".join(f"v{v}" for v in sorted(snapshots[name]))
        messages.append(
            checks.Error(
                f"{name}: has schema snapshots ({versions}) but is no longer a registered event type, so its "
                "stored events cannot be read",
                hint=f"Keep {name} registered under that name (a type's name is part of every stored event; "
                "to rename it, add the new type beside it). If no event of it was ever stored, delete its "
                f"snapshots from {directory}.",
                id="eventfold.E004",
            )
        )
    return messages


def _check_type(entry: EventType, versions: dict[int, Path], directory: Path) -> Iterator[checks.CheckMessage]:
    name, version = entry.name, entry.version
    for older in range(1, version):
        if older not in entry.upcasters:
            yield checks.Error(
                f"{name}: schema version {version} has no upcaster from version {older}, so stored version "
                f"{older} events cannot be read",
                hint=f'Register @upcaster("{name}", from_version={older}): a pure function from version {older} '
                f"data to version {older + 1} data.",
                id="eventfold.E002",
            )
        if older not in versions:
            yield checks.Error(
                f"{name}: the snapshot of schema version {older} is missing",
                hint=f"Keep every older version's snapshot (restore {snapshot_path(directory, name, older)} from "
                "git): it records what stored events of that version look like.",
                id="eventfold.E003",
            )
    path = versions.get(version)
    if path is None:
        yield checks.Warning(
            f"{name}: schema version {version} has no snapshot",
            hint=f"Write {snapshot_path(directory, name, version)}: {WRITE}.",
            id="eventfold.W001",
        )
        return
    committed = json.loads(path.read_text())["schema"]
    found = differences(committed, entry.json_schema())
    for difference in (d for d in found if not d.compatible):
        yield checks.Error(
            f"{name}: {difference.says()} while the type stays at schema version {version}: stored events "
            "and their readers cannot follow",
            hint=f"Either undo that change, or bump to event_type({name!r}, version={version + 1}) and register "
            f'@upcaster("{name}", from_version={version}) that turns version {version} data into the new shape; '
            f"then {WRITE} (version {version}'s snapshot stays).",
            id="eventfold.E001",
        )
    if (found and all(d.compatible for d in found)) or (not found and snapshot_of(entry)["schema"] != committed):
        said = "; ".join(d.says() for d in found) or "descriptions or defaults changed"
        yield checks.Info(
            f"{name}: a compatible change to schema version {version} ({said})",
            hint=f"Refresh the snapshot: {WRITE}.",
            id="eventfold.I001",
        )


def check(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """The Django system check (no database needed)."""
    return check_contracts(default_registry, snapshot_dir())


def write(registry: EventRegistry, directory: Path) -> list[Path]:
    """Write every type's current-version snapshot; older versions' files are left as they are."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for entry in registry.types():
        path = snapshot_path(directory, entry.name, entry.version)
        text = dump(snapshot_of(entry))
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            written.append(path)
    return written
