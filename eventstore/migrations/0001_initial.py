from django.db import migrations

EVENTS = """
CREATE TABLE eventstore_event (
    global_position bigint GENERATED ALWAYS AS IDENTITY,
    tx_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
    stream_id uuid NOT NULL,
    category text NOT NULL CHECK (category <> ''),
    bucket smallint NOT NULL CHECK (bucket >= 0),
    version integer NOT NULL CHECK (version > 0),
    event_id uuid NOT NULL,
    event_type text NOT NULL,
    schema_version smallint NOT NULL CHECK (schema_version > 0),
    data jsonb NOT NULL,
    metadata jsonb NOT NULL DEFAULT '{}',
    recorded_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT eventstore_event_pkey PRIMARY KEY (stream_id, version),
    CONSTRAINT eventstore_event_event_id_key UNIQUE (event_id)
);
-- The read order: (transaction id, position), bounded below by a checkpoint
-- and above by the horizon, both as index conditions.
CREATE INDEX eventstore_event_read_order ON eventstore_event (tx_id, global_position);
CREATE INDEX eventstore_event_category_order ON eventstore_event (category, tx_id, global_position);
CREATE INDEX eventstore_event_bucket_order ON eventstore_event (bucket, tx_id, global_position);
-- Positions and times grow with the table: BRIN finds them for almost no write cost.
CREATE INDEX eventstore_event_position ON eventstore_event USING brin (global_position);
CREATE INDEX eventstore_event_recorded_at ON eventstore_event USING brin (recorded_at);

-- Append-only, for every role including superusers (the embedded server runs as one).
CREATE FUNCTION eventstore_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the event log is append-only: % on % is refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER eventstore_event_no_update_delete BEFORE UPDATE OR DELETE ON eventstore_event
    FOR EACH ROW EXECUTE FUNCTION eventstore_refuse_change();
CREATE TRIGGER eventstore_event_no_truncate BEFORE TRUNCATE ON eventstore_event
    FOR EACH STATEMENT EXECUTE FUNCTION eventstore_refuse_change();
"""

SNAPSHOTS = """
CREATE TABLE eventstore_snapshot (
    stream_id uuid PRIMARY KEY,
    category text NOT NULL,
    version integer NOT NULL CHECK (version > 0),
    snapshot_version integer NOT NULL,
    state jsonb NOT NULL,
    taken_at timestamptz NOT NULL DEFAULT now()
);
"""


class Migration(migrations.Migration):
    initial = True
    dependencies: list = []
    operations = [
        migrations.RunSQL(EVENTS, reverse_sql=migrations.RunSQL.noop),
        migrations.RunSQL(SNAPSHOTS, reverse_sql="DROP TABLE eventstore_snapshot"),
    ]
