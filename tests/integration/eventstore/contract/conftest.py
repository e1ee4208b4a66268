"""The contract suite: every rule of the event store written once, checked on both stores."""

import pytest
from django.conf import settings

from eventstore import hooks
from eventstore.memory import InMemoryEventStore
from eventstore.roles import OWNER_ALIAS
from eventstore.store import EventStore

# The mark (not a fixture asked for at run time) tells pytest-django which tests need the database;
# the owner's alias too, when there is one, for what only the owner may do (archiving).
DATABASES = ["default", *([OWNER_ALIAS] if OWNER_ALIAS in settings.DATABASES else [])]
POSTGRES = pytest.param("postgres", marks=pytest.mark.django_db(transaction=True, databases=DATABASES))


@pytest.fixture(params=[POSTGRES, "memory"])
def store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> EventStore | InMemoryEventStore:
    """PostgreSQL with committed transactions (the horizon only shows committed events), or
    memory without any database: the project's append subscribers act on Django's database,
    so the memory store's tests run without them (`-k memory` needs no database)."""
    if request.param == "postgres":
        return EventStore()
    monkeypatch.setattr(hooks, "after_append", [])
    return InMemoryEventStore()
