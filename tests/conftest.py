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


@pytest.fixture(scope="session", autouse=True)
def _end_other_sessions(django_db_setup, django_db_blocker):
    """Worker threads of the API (and worker processes) keep their own connections open:
    end them before pytest-django drops the test database."""
    yield
    with django_db_blocker.unblock(), connections["default"].cursor() as cur:
        cur.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
