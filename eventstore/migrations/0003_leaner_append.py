"""A cheaper append, for the same reads.

Measured with callgrind on the backend (instructions per 10-event append, PostgreSQL 15):
- the four CHECK constraints were parsed from their stored text at every INSERT (PostgreSQL
  rebuilds check expressions per statement): 58,000 instructions. The append computes the
  values they guarded (version = expected + n, bucket from the stream id, schema version from
  the registry) and `EventStore.append` refuses an empty category;
- a BRIN index costs about 6,500 instructions per row even when it has nothing to update:
  one BRIN over (global_position, recorded_at) serves both lookups for half the price;
- the three read-order indexes never hold two equal keys (global_position is in every key),
  so deduplication only ever ran a futile pass before each page split: off;
- `category` compares byte-wise (COLLATE "C"): the index no longer goes through the locale.
"""

from django.db import migrations

FORWARD = """
ALTER TABLE eventstore_event
    DROP CONSTRAINT IF EXISTS eventstore_event_category_check,
    DROP CONSTRAINT IF EXISTS eventstore_event_bucket_check,
    DROP CONSTRAINT IF EXISTS eventstore_event_version_check,
    DROP CONSTRAINT IF EXISTS eventstore_event_schema_version_check;
ALTER TABLE eventstore_event ALTER COLUMN category TYPE text COLLATE "C";
ALTER INDEX eventstore_event_read_order SET (deduplicate_items = off);
ALTER INDEX eventstore_event_category_order SET (deduplicate_items = off);
ALTER INDEX eventstore_event_bucket_order SET (deduplicate_items = off);
DROP INDEX IF EXISTS eventstore_event_position;
DROP INDEX IF EXISTS eventstore_event_recorded_at;
CREATE INDEX eventstore_event_position_time ON eventstore_event USING brin (global_position, recorded_at);
"""

BACKWARD = """
DROP INDEX IF EXISTS eventstore_event_position_time;
CREATE INDEX eventstore_event_position ON eventstore_event USING brin (global_position);
CREATE INDEX eventstore_event_recorded_at ON eventstore_event USING brin (recorded_at);
ALTER INDEX eventstore_event_read_order RESET (deduplicate_items);
ALTER INDEX eventstore_event_category_order RESET (deduplicate_items);
ALTER INDEX eventstore_event_bucket_order RESET (deduplicate_items);
ALTER TABLE eventstore_event ALTER COLUMN category TYPE text COLLATE "default";
ALTER TABLE eventstore_event
    ADD CONSTRAINT eventstore_event_category_check CHECK (category <> ''),
    ADD CONSTRAINT eventstore_event_bucket_check CHECK (bucket >= 0),
    ADD CONSTRAINT eventstore_event_version_check CHECK (version > 0),
    ADD CONSTRAINT eventstore_event_schema_version_check CHECK (schema_version > 0);
"""


class Migration(migrations.Migration):
    dependencies = [("eventstore", "0002_subject_keys")]
    operations = [migrations.RunSQL(FORWARD, reverse_sql=BACKWARD)]
