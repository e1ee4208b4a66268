"""Projections: read models folded from the log.

    class AccountSummary(Projection):
        name = "account_summary"
        version = 1

        @handles("ledger.AccountOpened")
        def opened(self, event: RecordedEvent, cursor) -> None:
            cursor.execute("INSERT ... ON CONFLICT DO UPDATE ...", [...])

Handlers run inside the runner's transaction, which also moves the checkpoint: they
write with the given cursor (or the ORM) and must be upserts, so that a replay from any
point leaves the same rows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Generic, TypeVar

from eventstore.records import RecordedEvent

Handler = Callable[..., None]
S = TypeVar("S", bound="Subscriber")


def handles(*event_types: str) -> Callable[[Handler], Handler]:
    def mark(fn: Handler) -> Handler:
        fn._handles = event_types  # type: ignore[attr-defined]  # a mark on the function, read by __init_subclass__
        return fn

    return mark


class Subscriber:
    """What projections and process managers share: a name, a version, and the handlers marked
    with `@handles`, found once per class."""

    name: ClassVar[str]
    version: ClassVar[int] = 1
    handlers: ClassVar[dict[str, str]] = {}  # event type -> method name

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        found: dict[str, str] = {}
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                for event_type in getattr(value, "_handles", ()):
                    found[event_type] = attr
        cls.handlers = found

    @property
    def event_types(self) -> list[str]:
        return sorted(self.handlers)


class Projection(Subscriber):
    version: ClassVar[int] = 1  # change it to rebuild the read model (blue/green) on the next start
    tables: ClassVar[tuple[str, ...]] = ()  # its read-model tables
    # True when its handlers only send statements and never look at what one returned (no fetch,
    # no rowcount; not the ORM's save(), which reads its UPDATE's rowcount): the catch-up then
    # sends a batch's writes with the checkpoints' move in one round trip (psycopg's pipeline mode,
    # where a statement's rowcount is not known until the round trip ends). A fetch still works.
    pipelined: ClassVar[bool] = False

    def apply(self, event: RecordedEvent, cursor: Any) -> None:
        getattr(self, self.handlers[event.type])(event, cursor)

    def rebuild_batch(self, events: list[RecordedEvent], cursor: Any, memo: dict[str, Any]) -> None:
        """Apply a big batch during a rebuild or a verification, into tables that the cursor's
        search_path resolves to a scratch schema, or during the catch-up of a bucket far behind,
        into the live tables (then with an empty memo, in the transaction that moves the
        checkpoint: projections.runner). The events are in read order and all of this
        projection's types. Override it to fold the batch in memory and write each row once
        (projections.bulk); the result must equal what the handlers make. `memo` lives as long
        as the rebuild's time slice (a cache of rows already written); it is emptied whenever a
        batch rolls back. `memo["complete"]` is true while the memo has seen every row the scratch
        tables hold (a replay from zero in one process): what it does not know does not exist.

        The default applies the handlers one event at a time."""
        for event in events:
            self.apply(event, cursor)


class Registry(Generic[S]):
    """Subscribers of one kind by name: one instance each."""

    def __init__(self) -> None:
        self._items: dict[str, S] = {}

    def register(self, cls: type[S]) -> type[S]:
        self._items[cls.name] = cls()
        return cls

    def get(self, name: str) -> S:
        return self._items[name]

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def all(self) -> list[S]:
        return [self._items[n] for n in sorted(self._items)]


projection_registry: Registry[Projection] = Registry()
register = projection_registry.register
