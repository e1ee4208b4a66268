"""The events table refuses UPDATE, DELETE and TRUNCATE, for whichever role the tests run as (the
triggers fire for superusers too, even in replica mode: test_roles.py)."""

from uuid import uuid4

import psycopg
import pytest
from django.db import connection, transaction
from django.db.utils import DatabaseError

from tests.support import Opened, conninfo, find_superuser


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE eventstore_event SET data = '{}' WHERE stream_id = %s",
        "DELETE FROM eventstore_event WHERE stream_id = %s",
        "TRUNCATE eventstore_event",
    ],
)
def test_history_cannot_be_changed(store, statement):
    sid = uuid4()
    store.append(sid, "tally", [Opened(name="kept")])
    with (
        pytest.raises(DatabaseError, match=r"append-only|permission denied"),
        transaction.atomic(),
        connection.cursor() as cur,
    ):
        cur.execute(statement, [sid] if "%s" in statement else None)
    assert [e.data for e in store.read_stream(sid)] == [{"name": "kept"}]


def test_replica_mode_does_not_bypass_the_triggers(store):
    """Ordinary triggers do not fire with `session_replication_role = replica` (only superusers may
    set it): the log's fire ALWAYS. Tried as a superuser, whichever role the tests run as."""
    sid = uuid4()
    store.append(sid, "tally", [Opened(name="kept")])
    found = find_superuser()
    assert found is not None, "this test needs a superuser on the test server"
    user, password = found
    with psycopg.connect(conninfo(connection.settings_dict["NAME"], user, password)) as conn:
        assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone() == (True,)
        conn.execute("SET LOCAL session_replication_role = replica")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            conn.execute("DELETE FROM eventstore_event WHERE stream_id = %s", [sid])
    assert [e.data for e in store.read_stream(sid)] == [{"name": "kept"}]
