"""Archiving: finished streams out of the hot table.

`eventstore_archived_event` has the events table's shape (a plain `global_position`, copied, not
generated) and its read-order indexes; it is append-only like the log. A tombstoned stream's events
move there (`EventStore.archive`, as the owner role, through `manage.py archive_streams`): the
log's refusing trigger now also lets a DELETE of an `eventstore_event` row through when the session
has set `eventfold.archiving` to `on`, the role is the table's owner, the stream is tombstoned and
the very event (same id, stream and version) is already in the archive, so archiving can move
events but never lose one. The application role may only SELECT the archive.

Safe on a live log: a new, empty table; CREATE OR REPLACE FUNCTION takes no lock on the events
table and appends never call it. Reversible while the archive is empty (the backward step refuses
to drop archived events: move them back first).
"""

from django.db import migrations

ARCHIVE = """
CREATE TABLE eventstore_archived_event (
    global_position bigint NOT NULL,
    tx_id xid8 NOT NULL,
    stream_id uuid NOT NULL,
    category text NOT NULL,
    bucket smallint NOT NULL,
    version integer NOT NULL,
    event_id uuid NOT NULL,
    event_type text NOT NULL,
    schema_version smallint NOT NULL,
    data jsonb NOT NULL,
    metadata jsonb NOT NULL,
    recorded_at timestamptz NOT NULL,
    archived_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT eventstore_archived_event_pkey PRIMARY KEY (stream_id, version),
    CONSTRAINT eventstore_archived_event_event_id_key UNIQUE (event_id)
);
CREATE INDEX eventstore_archived_event_read_order ON eventstore_archived_event (tx_id, global_position);
CREATE INDEX eventstore_archived_event_bucket_order ON eventstore_archived_event (bucket, tx_id, global_position);
CREATE TRIGGER eventstore_archived_event_no_update_delete BEFORE UPDATE OR DELETE ON eventstore_archived_event
    FOR EACH ROW EXECUTE FUNCTION eventstore_refuse_change();
CREATE TRIGGER eventstore_archived_event_no_truncate BEFORE TRUNCATE ON eventstore_archived_event
    FOR EACH STATEMENT EXECUTE FUNCTION eventstore_refuse_change();
ALTER TABLE eventstore_archived_event
    ENABLE ALWAYS TRIGGER eventstore_archived_event_no_update_delete,
    ENABLE ALWAYS TRIGGER eventstore_archived_event_no_truncate;

CREATE OR REPLACE FUNCTION eventstore_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND TG_TABLE_NAME = 'eventstore_event'
            AND pg_has_role(current_user, (SELECT relowner FROM pg_class WHERE oid = TG_RELID), 'USAGE') THEN
        IF OLD.category = current_setting('eventfold.expiring', true) THEN
            RETURN OLD;  -- retention, by the owner, in the one category it names
        END IF;
        IF current_setting('eventfold.archiving', true) = 'on'
                AND EXISTS (SELECT 1 FROM eventstore_tombstone t WHERE t.stream_id = OLD.stream_id)
                AND EXISTS (SELECT 1 FROM eventstore_archived_event a WHERE a.event_id = OLD.event_id
                            AND a.stream_id = OLD.stream_id AND a.version = OLD.version) THEN
            RETURN OLD;  -- archiving, by the owner: a tombstoned stream's event already in the archive
        END IF;
    END IF;
    RAISE EXCEPTION 'the event log is append-only: % on % is refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;
"""

NO_ARCHIVE = """
DO $$ BEGIN
    IF EXISTS (SELECT 1 FROM eventstore_archived_event) THEN
        RAISE EXCEPTION 'eventstore_archived_event holds archived events: move them back before unapplying 0007';
    END IF;
END $$;
DROP TABLE eventstore_archived_event;
"""


def _retention_only() -> str:
    from importlib import import_module

    return import_module("eventstore.migrations.0006_retention").RETENTION


class Migration(migrations.Migration):
    dependencies = [("eventstore", "0006_retention")]
    operations = [migrations.RunSQL(ARCHIVE, reverse_sql=NO_ARCHIVE + _retention_only())]
