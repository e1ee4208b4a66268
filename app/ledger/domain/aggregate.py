"""The aggregate shape the event store's repository expects, without importing it:
`category`, `snapshot_version`, `initial_state()`, a pure `evolve(state, event)`, and
instances with `id`, `state`, `version` and `pending_events`."""

from __future__ import annotations

from typing import ClassVar, Generic, TypeVar
from uuid import UUID

from pydantic import BaseModel

S = TypeVar("S", bound=BaseModel)


class Aggregate(Generic[S]):
    category: ClassVar[str]
    snapshot_version: ClassVar[int] = 1

    def __init__(self, id: UUID, state: S | None = None, version: int = 0) -> None:
        self.id = id
        self.state: S = self.initial_state() if state is None else state
        self.version = version
        self.pending_events: list[BaseModel] = []

    @classmethod
    def initial_state(cls) -> S:
        raise NotImplementedError

    @staticmethod
    def evolve(state: S, event: BaseModel) -> S:
        raise NotImplementedError

    def record(self, event: BaseModel) -> None:
        """Apply a new event to the state and keep it for saving."""
        self.state = self.evolve(self.state, event)
        self.pending_events.append(event)
