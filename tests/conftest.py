import pytest
from django.db import connections

from eventstore.store import EventStore


@pytest.fixture
def store(transactional_db) -> EventStore:
    """The event store on the test database, with committed (not rolled-back) transactions,
    since the read horizon and other connections only see committed data."""
    return EventStore()


@pytest.fixture
def test_db_name(transactional_db) -> str:
    return connections["default"].settings_dict["NAME"]
