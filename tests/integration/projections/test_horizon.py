"""The horizon selector names the session whose open transaction keeps subscribers waiting."""

import os
import time
from uuid import uuid4

import psycopg

from projections.horizon import horizon
from tests.conftest import worker_database_url
from tests.support import Tally


def test_an_open_transaction_with_an_xid_is_named_with_its_pid_and_application(store):
    name = f"horizon-holder-{os.getpid()}"
    with psycopg.connect(worker_database_url(), application_name=name) as holder:
        pid = holder.info.backend_pid
        xid = holder.execute("SELECT pg_current_xact_id()::text").fetchone()[0]  # an xid, in an open transaction
        assert pid not in [h.pid for h in horizon(min_age_s=1.0).holders]  # young: every command is, briefly

        tally = Tally.open("behind the horizon")  # commits after the holder began: it waits
        store.append(tally.id, "tally", tally.pending_events, expected_version="no_stream")
        time.sleep(0.3)
        seen = horizon(min_age_s=0.2)
        [mine] = [h for h in seen.holders if h.pid == pid]
        assert mine.application_name == name and mine.database == holder.info.dbname
        assert mine.xid == str(int(xid) % 2**32) and mine.age_s >= 0.2 and mine.state == "idle in transaction"
        assert "pg_current_xact_id" in mine.query
        assert seen.xmin <= int(xid) and seen.waiting >= 1
        assert seen.holders[0].holds_horizon  # the oldest holds it (another test's session, maybe)
        assert mine.holds_horizon == (seen.xmin == int(xid))
        holder.rollback()
    time.sleep(0.05)
    assert pid not in [h.pid for h in horizon(min_age_s=0.0).holders]


def test_a_read_only_snapshot_does_not_hold_the_horizon(transactional_db):
    with psycopg.connect(worker_database_url(), application_name=f"reader-{uuid4().hex[:6]}") as reader:
        reader.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        reader.execute("SELECT count(*) FROM pg_class").fetchone()  # a snapshot, no xid
        time.sleep(0.2)
        assert reader.info.backend_pid not in [h.pid for h in horizon(min_age_s=0.1).holders]
