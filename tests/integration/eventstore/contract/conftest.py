"""The contract suite: every rule of the event store written once, checked on both stores."""

import pytest

from eventstore import hooks
from eventstore.memory import InMemoryEventStore
from eventstore.store import EventStore

# The mark (not a fixture asked for at run time) tells pytest-django which tests need the database.
POSTGRES = pytest.param("postgres", marks=pytest.mark.django_db(transaction=True))


@pytest.fixture(params=[POSTGRES, "memory"])
def store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> EventStore | InMemoryEventStore:
    """PostgreSQL with committed transactions (the horizon only shows committed events), or
    memory without any database: the project's append subscribers act on Django's database,
    so the memory store's tests run without them (`-k memory` needs no database)."""
    if request.param == "postgres":
        return EventStore()
    monkeypatch.setattr(hooks, "after_append", [])
    return InMemoryEventStore()
