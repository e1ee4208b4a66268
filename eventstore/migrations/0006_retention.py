"""Retention: the one way an event leaves the log.

The log's refusing trigger function lets a DELETE of an `eventstore_event` row through only when
the session names that row's category in the setting `eventfold.expiring` and the current role
is (or is a member of) the table's owner: what `manage.py enforce_retention` does, as the owner
role, for the categories of `EVENTFOLD_RETENTION` and their expired events alone. The application
role has no DELETE privilege and is never a member of the owner (`eventstore.roles` audits it), so
for it nothing changes; UPDATE and TRUNCATE stay refused for everyone. An owner could always
disable the triggers: this only spares it that (a table lock, and a window in which every row
could be deleted).

Safe on a live log: CREATE OR REPLACE FUNCTION takes no lock on the events table and appends
never call it (it fires on UPDATE, DELETE and TRUNCATE only). Reversible: the backward step
puts the function of 0001 back.
"""

from django.db import migrations

RETENTION = """
CREATE OR REPLACE FUNCTION eventstore_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND TG_TABLE_NAME = 'eventstore_event'
            AND OLD.category = current_setting('eventfold.expiring', true)
            AND pg_has_role(current_user, (SELECT relowner FROM pg_class WHERE oid = TG_RELID), 'USAGE') THEN
        RETURN OLD;  -- retention, by the owner, in the one category it names
    END IF;
    RAISE EXCEPTION 'the event log is append-only: % on % is refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;
"""

APPEND_ONLY = """
CREATE OR REPLACE FUNCTION eventstore_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the event log is append-only: % on % is refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;
"""


class Migration(migrations.Migration):
    dependencies = [("eventstore", "0005_tombstones")]
    operations = [migrations.RunSQL(RETENTION, reverse_sql=APPEND_ONLY)]
