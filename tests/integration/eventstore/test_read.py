"""The read query's plan on PostgreSQL. The reading rules both stores share are in contract/."""

from django.db import connection

from eventstore.statements import ORDERED_SCAN_ON, read_all_statement


def test_the_read_walks_the_index_with_both_bounds(store):
    """EXPLAIN shows an ordered index scan, the checkpoint and the horizon as index conditions, no sort."""
    for bucket in (False, True):
        query = read_all_statement(bucket, False, False).decode()
        query = query.replace("%(tx)s", "'0'").replace("%(pos)s", "0").replace("%(limit)s", "1000")
        query = query.replace("%(bucket)s", "3")
        with connection.cursor() as cur, connection.connection.transaction():
            cur.execute(ORDERED_SCAN_ON)
            cur.execute("EXPLAIN " + query)
            plan = "\n".join(row[0] for row in cur.fetchall())
        assert "Index Scan using eventstore_event_" in plan, plan
        assert "Sort" not in plan, plan
        cond = next(line for line in plan.splitlines() if "Index Cond" in line)
        assert "ROW(tx_id, global_position) > ROW(" in cond and "pg_snapshot_xmin" in cond, plan
