"""Integration events: the public, versioned messages other services read, kept apart from the
domain events, which stay internal and free to change.

A domain (app/ledger/integration.py) declares each public message as a pydantic model with a
stable name and a schema version, and translates its domain events into them with small pure
functions:

    @integration_event("ledger.funds_deposited", version=1)
    class FundsDepositedV1(IntegrationBody):
        account_id: UUID
        amount: int
        currency: str

    @translates("ledger.FundsDeposited")
    def funds_deposited(event: RecordedEvent, store: Store) -> FundsDepositedV1 | None:
        ...

A translation returns the public body, or None when the event says nothing to the outside. A
domain type may have several translations: that is how version 2 of a message is published
beside version 1 while consumers move over. The routing key names the context, the event and
the version (`ledger.funds_deposited.v1`), so consumers bind by pattern (`ledger.#`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from eventstore.contract import Store
from eventstore.records import RecordedEvent

NAME = r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$"  # <context>.<event>, as in routing keys
B = TypeVar("B", bound="IntegrationBody")
Translation = Callable[[RecordedEvent, Store], "IntegrationBody | None"]


class IntegrationBody(BaseModel):
    """What every integration event carries: the domain event's id (also the message id, which
    consumers dedupe by) and when it happened. Extra fields are not forbidden in the published
    schema: adding one is a compatible change that consumers must ignore."""

    model_config = ConfigDict(frozen=True)

    event_id: UUID
    occurred_at: datetime


@dataclass(frozen=True)
class IntegrationEvent:
    name: str  # <context>.<event>, e.g. ledger.funds_deposited
    version: int
    model: type[IntegrationBody]

    @property
    def routing_key(self) -> str:
        return f"{self.name}.v{self.version}"

    def json_schema(self) -> dict[str, Any]:
        return self.model.model_json_schema()


@dataclass(frozen=True)
class Message:
    """One integration event ready to publish: its type and the JSON body."""

    event: IntegrationEvent
    body: dict[str, Any]
    message_id: str


class IntegrationRegistry:
    """The integration events by name and version, and the translations by domain event type."""

    def __init__(self) -> None:
        self._events: dict[tuple[str, int], IntegrationEvent] = {}
        self._by_model: dict[type[IntegrationBody], IntegrationEvent] = {}
        self._translations: dict[str, list[Translation]] = {}
        # domain type -> the publisher's method (projections.processes reads a process manager's
        # `handlers`): the same dict object, so types registered after the publisher count too.
        self.handlers: dict[str, str] = {}

    def integration_event(self, name: str, version: int = 1) -> Callable[[type[B]], type[B]]:
        if not re.match(NAME, name) or version < 1:
            raise ValueError(f"an integration event is named <context>.<event> in snake case, version >= 1: {name}")

        def decorate(model: type[B]) -> type[B]:
            entry = IntegrationEvent(name, version, model)
            if self._events.setdefault((name, version), entry).model is not model:
                raise ValueError(f"integration event {name} v{version} is registered twice")
            self._by_model[model] = entry
            return model

        return decorate

    def translates(self, domain_type: str) -> Callable[[Translation], Translation]:
        def decorate(fn: Translation) -> Translation:
            found = self._translations.setdefault(domain_type, [])
            if fn not in found:
                found.append(fn)
            self.handlers[domain_type] = "publish"
            return fn

        return decorate

    def events(self) -> list[IntegrationEvent]:
        return [self._events[key] for key in sorted(self._events)]

    def of(self, body: IntegrationBody) -> IntegrationEvent:
        return self._by_model[type(body)]

    @property
    def domain_types(self) -> list[str]:
        """The domain event types that something is published for."""
        return sorted(self._translations)

    def translate(self, event: RecordedEvent, store: Store) -> list[Message]:
        """The messages a domain event becomes (none for most)."""
        messages = []
        for translation in self._translations.get(event.type, ()):
            body = translation(event, store)
            if body is not None:
                messages.append(Message(self.of(body), body.model_dump(mode="json"), str(event.event_id)))
        return messages


registry = IntegrationRegistry()
integration_event = registry.integration_event
translates = registry.translates
