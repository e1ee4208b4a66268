"""Given/when/then for aggregates, without a database.

    from eventstore.testing import given

    given(Account, AccountOpened(owner="Ann", currency="EUR"), FundsDeposited(amount=100)) \\
        .when(lambda account: account.withdraw(30)) \\
        .then(FundsWithdrawn(amount=30))

    given(Account, AccountOpened(owner="Ann", currency="EUR")) \\
        .when(lambda account: account.withdraw(30)) \\
        .then_raises(InsufficientFunds)

`given` folds the past events into a fresh aggregate of that type (a new stream id unless
one is given); `when` runs one command method; `then` compares the new events (pydantic
equality, in order) and `then_raises` the error, checking that no event was recorded.
For a command that creates the aggregate, use `given(Account).when_new(lambda:
Account.open(...))`. Each returns the scenario, so `.state` and `.aggregate` can be
inspected afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar
from uuid import UUID, uuid4

from pydantic import BaseModel

from eventstore.aggregate import AggregateLike

A = TypeVar("A", bound=AggregateLike)


class Scenario(Generic[A]):
    def __init__(self, aggregate: A) -> None:
        self.aggregate = aggregate
        self.error: BaseException | None = None
        self._ran = False

    @property
    def state(self) -> Any:
        return self.aggregate.state

    def when(self, command: Callable[[A], object]) -> Scenario[A]:
        self._ran = True
        try:
            command(self.aggregate)
        except Exception as exc:  # kept for then_raises; re-raised by then()
            self.error = exc
        return self

    def when_new(self, create: Callable[[], A]) -> Scenario[A]:
        self._ran = True
        try:
            self.aggregate = create()
        except Exception as exc:
            self.error = exc
        return self

    @property
    def new_events(self) -> list[BaseModel]:
        return list(self.aggregate.pending_events)

    def then(self, *expected: BaseModel) -> Scenario[A]:
        assert self._ran, "call when() before then()"
        if self.error is not None:
            raise AssertionError(f"expected events, the command raised {self.error!r}") from self.error
        assert self.new_events == list(expected), f"expected {list(expected)!r}, recorded {self.new_events!r}"
        return self

    def then_nothing(self) -> Scenario[A]:
        return self.then()

    def then_raises(self, error: type[BaseException], match: str | None = None) -> Scenario[A]:
        assert self._ran, "call when() before then_raises()"
        assert isinstance(self.error, error), f"expected {error.__name__}, got {self.error!r}"
        if match is not None:
            assert match in str(self.error), f"{match!r} not in {str(self.error)!r}"
        assert not self.new_events, f"an error must record nothing, recorded {self.new_events!r}"
        return self


def given(aggregate_type: type[A], *events: BaseModel, id: UUID | None = None) -> Scenario[A]:
    """An aggregate of `aggregate_type` whose history is `events`."""
    state = aggregate_type.initial_state()
    for event in events:
        state = aggregate_type.evolve(state, event)
    return Scenario(aggregate_type(id or uuid4(), state, len(events)))
