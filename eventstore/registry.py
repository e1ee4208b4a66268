"""The event registry: every event type is a pydantic model with a stable name
and a schema version. It validates payloads on append, upcasts old schema
versions on read with a chain of pure functions, and is the event catalog.

    @event_type("ledger.FundsDeposited", version=2)
    class FundsDeposited(BaseModel):
        amount: int
        channel: str = "unknown"

    @upcaster("ledger.FundsDeposited", from_version=1)
    def _v1_to_v2(data: dict) -> dict:
        return {**data, "channel": "unknown"}

An upcaster is a pure function: it returns new data and never changes what it was given, which
readers keep beside the result as the row's raw data (`RecordedEvent.raw_data`). Each type's JSON
schema per version is kept as a snapshot (eventstore/contracts.py) that a system check compares
the models with.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from eventstore.errors import InvalidEventData, UnknownEventType, UpcastError
from eventstore.inputs import HISTORY
from eventstore.records import RecordedEvent

M = TypeVar("M", bound=BaseModel)
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass
class EventType:
    name: str
    version: int
    model: type[BaseModel]
    upcasters: dict[int, Upcaster] = field(default_factory=dict)  # from_version -> fn
    personal_data: tuple[str, ...] = ()  # top-level string fields stored encrypted per data subject

    def json_schema(self) -> dict[str, Any]:
        return self.model.model_json_schema()

    @functools.cached_property
    def wire(self) -> tuple[bytes, bytes]:
        """Name and schema version as the append statement's text parameters."""
        return self.name.encode(), b"%d" % self.version


class EventRegistry:
    """Maps stable names to event models, and models back to names."""

    def __init__(self) -> None:
        self._by_name: dict[str, EventType] = {}
        self._by_model: dict[type[BaseModel], EventType] = {}
        self.current_versions: dict[str, int] = {}
        self._history: dict[str, int] = {}  # the types with a version above 1: what a read may upcast
        self.personal_types: dict[str, tuple[str, ...]] = {}

    @property
    def has_history(self) -> bool:
        """Whether any type has a schema version above 1, so that reads may need upcasting."""
        return bool(self._history)

    def register(
        self, name: str, version: int = 1, *, personal_data: tuple[str, ...] = ()
    ) -> Callable[[type[M]], type[M]]:
        """Register a pydantic model as event type `name` at schema `version`.

        `personal_data` names string fields that are stored encrypted with a key per data
        subject (the stream), so that forgetting the subject means destroying a key.
        """
        if version < 1:
            raise ValueError("schema versions start at 1")

        def decorate(model: type[M]) -> type[M]:
            known = self._by_name.get(name)
            # the same class again (a module reloaded) replaces the entry; another class is an error
            reloaded = known is not None and (known.model.__module__, known.model.__qualname__) == (
                model.__module__,
                model.__qualname__,
            )
            if known is not None and known.model is not model and not reloaded:
                raise ValueError(f"event type {name!r} is already registered to {known.model.__qualname__}")
            missing = [f for f in personal_data if f not in model.model_fields]
            if missing:
                raise ValueError(f"{name}: personal_data names unknown fields {missing}")
            entry = EventType(name, version, model, known.upcasters if known else {}, tuple(personal_data))
            self._by_name[name] = entry
            self._by_model[model] = entry
            self.current_versions[name] = version
            if version > 1:
                self._history[name] = version
            else:
                self._history.pop(name, None)
            if personal_data:
                self.personal_types[name] = entry.personal_data
            return model

        return decorate

    def upcaster(self, name: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Register a pure function that turns `from_version` data into `from_version + 1` data."""

        def decorate(fn: Upcaster) -> Upcaster:
            entry = self._by_name.get(name)
            if entry is None:
                raise UnknownEventType(f"register {name!r} before its upcasters")
            entry.upcasters[from_version] = fn
            return fn

        return decorate

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def get(self, name: str) -> EventType:
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownEventType(f"unknown event type {name!r}") from None

    def of(self, payload: BaseModel) -> EventType:
        try:
            return self._by_model[type(payload)]
        except KeyError:
            raise UnknownEventType(f"{type(payload).__qualname__} is not a registered event type") from None

    def types(self) -> list[EventType]:
        return sorted(self._by_name.values(), key=lambda t: t.name)

    def validate(self, name: str, data: Mapping[str, Any]) -> BaseModel:
        """Build the payload of event type `name` from plain data, or raise InvalidEventData."""
        entry = self.get(name)
        try:
            return entry.model.model_validate(data)
        except ValidationError as exc:
            errors = [{"loc": e["loc"], "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
            raise InvalidEventData(name, errors) from None

    def upcast(self, name: str, schema_version: int, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Bring stored data of any older schema version up to the current one."""
        entry = self._by_name.get(name)
        if entry is None or schema_version >= entry.version:
            return schema_version, data
        while schema_version < entry.version:
            fn = entry.upcasters.get(schema_version)
            if fn is None:
                raise UpcastError(f"{name}: no upcaster from schema version {schema_version}")
            data = fn(data)
            schema_version += 1
        return schema_version, data

    def upcast_events(self, events: list[RecordedEvent]) -> list[RecordedEvent]:
        """Bring events of older schema versions up to date; an upcast event keeps the row's version
        and data beside the result (`stored_version`, `raw_data`). A page with nothing to upcast is
        returned as it is, copied nowhere: one dict lookup per event when some type has history,
        none when no type has."""
        history = self._history
        if not history:
            return events
        get = history.get
        if not [e for e in events if e.schema_version < get(e.type, 0)]:
            return events
        out = []
        for e in events:
            if e.schema_version < get(e.type, 0):
                schema_version, data = self.upcast(e.type, e.schema_version, e.data)
                e = e._replace(
                    schema_version=schema_version, data=data, stored_version=e.schema_version, raw_data=e.data
                )
            out.append(e)
        return out

    def decode(self, name: str, data: dict[str, Any]) -> BaseModel:
        """The typed payload of already upcast data, read from the log: validated with the
        `HISTORY` context, so that rules added since it was written do not refuse a stored fact."""
        return self.get(name).model.model_validate(data, context=HISTORY)


registry = EventRegistry()
event_type = registry.register
upcaster = registry.upcaster
