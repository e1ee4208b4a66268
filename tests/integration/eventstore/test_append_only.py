"""The events table refuses UPDATE, DELETE and TRUNCATE, even for a superuser."""

from uuid import uuid4

import pytest
from django.db import connection, transaction
from django.db.utils import DatabaseError

from tests.support import Opened


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
    with connection.cursor() as cur:
        cur.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        is_superuser = cur.fetchone()[0]
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cur:
        cur.execute(statement, [sid] if "%s" in statement else None)
    assert [e.data for e in store.read_stream(sid)] == [{"name": "kept"}]
    assert is_superuser  # the test connections (embedded and CI) are superusers: triggers hold anyway
