"""What only the owner role may do to the log: `manage.py enforce_retention` deletes expired events
for good, in the categories of EVENTFOLD_RETENTION only, and archiving moves tombstoned streams'
events; the application role can do neither. The API leaves expired events out before that."""

from io import StringIO
from uuid import uuid4

import psycopg
import pytest
from django.core.management import call_command
from django.db import connections
from django.db.utils import ProgrammingError

from eventstore.store import EventStore
from tests.conftest import owner_cursor
from tests.integration.api.conftest import Api, make_user
from tests.support import Added, Opened

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "owner"])
RETENTION = {"expiring": {"max_count": 2}}


def stored_versions(sid) -> list[int]:
    """What is in the table, whatever the readers leave out."""
    with connections["default"].cursor() as cur:
        cur.execute("SELECT version FROM eventstore_event WHERE stream_id = %s ORDER BY version", [sid])
        return [row[0] for row in cur.fetchall()]


def enforce(**options) -> str:
    out = StringIO()
    call_command("enforce_retention", stdout=out, **options)
    return out.getvalue()


def test_expired_events_are_deleted_other_categories_kept(settings):
    category = f"expiring-{uuid4().hex[:8]}"  # no other test's events in it
    settings.EVENTFOLD_RETENTION = {category: {"max_count": 2}}
    store = EventStore()
    short, long, kept = uuid4(), uuid4(), uuid4()
    store.append(short, category, [Opened(name="a"), Added(amount=1)])
    store.append(long, category, [Opened(name="b"), *(Added(amount=i) for i in range(1, 7))])
    store.append(kept, "tally", [Opened(name="c"), *(Added(amount=i) for i in range(1, 7))])
    assert stored_versions(long) == [1, 2, 3, 4, 5, 6, 7]  # left out by readers, still stored
    assert f"{category}: 5 expired events deleted" in enforce(batch=2)  # three batches
    assert stored_versions(long) == [6, 7]
    assert stored_versions(short) == [1, 2]
    assert stored_versions(kept) == [1, 2, 3, 4, 5, 6, 7]
    assert f"{category}: 0 expired events deleted" in enforce()
    assert store.append(long, category, [Added(amount=9)], expected_version=7).version == 8


def test_nothing_to_do_without_a_policy(settings):
    settings.EVENTFOLD_RETENTION = {}
    assert "nothing to do" in enforce()


def test_a_bad_policy_stops_the_command(settings):
    settings.EVENTFOLD_RETENTION = {"account": {"max_age": 60}}
    with pytest.raises(Exception, match="aggregate's category"):
        enforce()


def test_the_application_role_cannot_delete_even_naming_the_category(settings):
    sid = uuid4()
    EventStore().append(sid, "expiring", [Opened(name="a"), Added(amount=1), Added(amount=2)])
    with pytest.raises(ProgrammingError, match="permission denied"), connections["default"].cursor() as cur:
        cur.execute("SELECT set_config('eventfold.expiring', 'expiring', false)")
        cur.execute("DELETE FROM eventstore_event WHERE stream_id = %s", [sid])
    assert stored_versions(sid) == [1, 2, 3]


@pytest.mark.parametrize("named", [None, "tally", "expiring2"])
def test_the_owner_deletes_only_in_the_category_it_names(named):
    sid = uuid4()
    EventStore().append(sid, "expiring", [Opened(name="a"), Added(amount=1)])
    with owner_cursor() as cur:
        if named is not None:
            cur.execute("SELECT set_config('eventfold.expiring', %s, false)", [named])
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            cur.execute("DELETE FROM eventstore_event WHERE stream_id = %s", [sid])
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            cur.execute("UPDATE eventstore_event SET category = 'x' WHERE stream_id = %s", [sid])
    assert stored_versions(sid) == [1, 2]


def test_the_api_leaves_expired_events_out(settings):
    settings.EVENTFOLD_RETENTION = RETENTION
    api = Api(make_user("vic", "viewer"))
    sid = uuid4()
    EventStore().append(sid, "expiring", [Opened(name="a"), *(Added(amount=i) for i in range(1, 5))])
    events = api.get(f"/api/streams/{sid}/events").json()["items"]
    assert [e["version"] for e in events] == [4, 5]
    log = api.get("/api/events", category="expiring", limit=1000).json()["items"]
    assert [e["version"] for e in log if e["stream_id"] == str(sid)] == [4, 5]
    typed = api.get("/api/events", category="expiring", type="test.Added", limit=1000).json()["items"]
    assert [e["version"] for e in typed if e["stream_id"] == str(sid)] == [4, 5]


@pytest.mark.parametrize("tombstoned", [False, True])
def test_archiving_on_lets_the_owner_delete_only_archived_events_of_tombstoned_streams(tombstoned):
    sid = uuid4()
    store = EventStore()
    store.append(sid, "tally", [Opened(name="a")])
    if tombstoned:
        store.tombstone(sid)
    with owner_cursor() as cur:
        cur.execute("SELECT set_config('eventfold.archiving', 'on', false)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            cur.execute("DELETE FROM eventstore_event WHERE stream_id = %s", [sid])  # not in the archive
    assert stored_versions(sid) == [1]


def test_the_application_role_cannot_archive():
    sid = uuid4()
    store = EventStore()
    store.append(sid, "tally", [Opened(name="a")])
    store.tombstone(sid)
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
        store.archive([sid])
    assert stored_versions(sid) == [1]
