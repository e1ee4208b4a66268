"""Tombstones: streams closed for good.

One small table of its own, append-only like the log (the same refusing function, its triggers
fired ALWAYS): a tombstone is never lifted. The append statement refuses to insert into a stream
that has one (a probe of this table's primary key inside the same statement, see
`statements.append_statement`).

Safe on a live log: it creates a new, empty table and touches nothing of `eventstore_event`
(no lock on it). Reversible: the backward step drops the table and its tombstones with it, so
the streams accept appends again; run it only together with code that no longer reads it.
"""

from django.db import migrations

TOMBSTONES = """
CREATE TABLE eventstore_tombstone (
    stream_id uuid PRIMARY KEY,
    tombstoned_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    reason text NOT NULL DEFAULT ''
);
CREATE TRIGGER eventstore_tombstone_no_update_delete BEFORE UPDATE OR DELETE ON eventstore_tombstone
    FOR EACH ROW EXECUTE FUNCTION eventstore_refuse_change();
CREATE TRIGGER eventstore_tombstone_no_truncate BEFORE TRUNCATE ON eventstore_tombstone
    FOR EACH STATEMENT EXECUTE FUNCTION eventstore_refuse_change();
ALTER TABLE eventstore_tombstone
    ENABLE ALWAYS TRIGGER eventstore_tombstone_no_update_delete,
    ENABLE ALWAYS TRIGGER eventstore_tombstone_no_truncate;
"""


class Migration(migrations.Migration):
    dependencies = [("eventstore", "0004_always_append_only")]
    operations = [migrations.RunSQL(TOMBSTONES, reverse_sql="DROP TABLE eventstore_tombstone")]
