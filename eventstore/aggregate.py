"""The aggregate base, free of Django and of the database, so that domain code can subclass it.

An aggregate type is any class with this shape (domain code need not import
this module, it only has to match it):

    category: ClassVar[str]            # the stream category, e.g. "account"
    snapshot_version: ClassVar[int]    # bump when the state's shape changes
    initial_state() -> State           # classmethod: the state before any event
    evolve(state, event) -> State      # pure fold: state + event -> state
    instance.id, .state, .version, .pending_events

`Aggregate` below is a ready-made base with that shape. State is a pydantic
model (or anything with `model_dump(mode="json")` and `model_validate`), which
is what snapshots store. `eventstore.repository.Repository` loads and saves them.
"""

from __future__ import annotations

from typing import Any, ClassVar, Generic, Protocol, TypeVar
from uuid import UUID

from pydantic import BaseModel

S = TypeVar("S", bound=BaseModel)


class AggregateLike(Protocol):
    """The shape above, as a type: what `Repository` loads and saves (`Aggregate` has it)."""

    category: ClassVar[str]
    id: UUID
    state: Any
    version: int
    pending_events: list[BaseModel]

    def __init__(self, id: UUID, state: Any, version: int) -> None: ...

    @classmethod
    def initial_state(cls) -> Any: ...

    @staticmethod
    def evolve(state: Any, event: BaseModel) -> Any: ...


A = TypeVar("A", bound=AggregateLike)

aggregate_types: dict[str, type[AggregateLike]] = {}


def register_aggregate(aggregate_type: type[A]) -> type[A]:
    """Make an aggregate type known by its category (for the time machine and the console)."""
    aggregate_types[aggregate_type.category] = aggregate_type
    return aggregate_type


class Aggregate(Generic[S]):
    """Base class: subclasses set `category`, `initial_state` and `evolve`, and
    their command methods call `record(event)` after checking invariants."""

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
