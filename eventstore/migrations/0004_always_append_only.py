"""Append-only for every role and every session, and subject keys that can only be destroyed.

- The log's triggers fire ALWAYS: an ordinary trigger does not fire in a session with
  `session_replication_role = replica`, which a superuser may set, so until now a superuser
  could UPDATE or DELETE events that way. (Disabling or dropping a trigger needs the table's
  owner: see `eventstore.roles` for the role the application runs as, which owns none of this.)
- `eventstore_subject_key` gets a guard of its own: forgetting a subject (the key set to NULL,
  `forgotten_at` set) is the only change a key row accepts; replacing or restoring a key,
  deleting a row and TRUNCATE are refused, for every role, ALWAYS. A forgotten subject stays
  forgotten, and a deleted row could not let a subject's personal data be written again under
  a new key. Work that truly must remove rows (retention) runs as the owner, who can disable it.

The privileges of the application role are not granted here but by `manage.py migrate` after
every run (`eventstore.roles.secure`), so they also follow a later switch from one role to two.

Safe on a live log: one ALTER TABLE on the events table (a SHARE ROW EXCLUSIVE lock, which
waits for running appends and holds new ones only for the moment it takes to flip two flags in
the catalog; `lock_timeout` bounds the wait, so a long transaction in the way makes the
migration fail rather than queue every append behind it: run it again). Nothing is rewritten
or scanned. Reversible.
"""

from django.db import migrations

# Inside the migration's transaction: wait at most this long for the events table's lock.
LOCK_TIMEOUT = "SET LOCAL lock_timeout = '5s';"

ALWAYS = LOCK_TIMEOUT + """
ALTER TABLE eventstore_event
    ENABLE ALWAYS TRIGGER eventstore_event_no_update_delete,
    ENABLE ALWAYS TRIGGER eventstore_event_no_truncate
"""
ORIGIN = LOCK_TIMEOUT + """
ALTER TABLE eventstore_event
    ENABLE TRIGGER eventstore_event_no_update_delete,
    ENABLE TRIGGER eventstore_event_no_truncate
"""

SUBJECT_KEY_GUARD = """
CREATE FUNCTION eventstore_subject_key_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN  -- (OLD and NEW exist only for row operations)
        IF OLD.wrapped_key IS NOT NULL AND NEW.wrapped_key IS NULL AND NEW.forgotten_at IS NOT NULL
                AND NEW.subject_id = OLD.subject_id AND NEW.created_at = OLD.created_at THEN
            RETURN NEW;  -- forgetting: the one change a subject key accepts
        END IF;
    END IF;
    RAISE EXCEPTION 'a subject key can only be destroyed (forgotten), never replaced, restored or deleted: % refused',
        TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER eventstore_subject_key_only_forget BEFORE UPDATE OR DELETE ON eventstore_subject_key
    FOR EACH ROW EXECUTE FUNCTION eventstore_subject_key_guard();
CREATE TRIGGER eventstore_subject_key_no_truncate BEFORE TRUNCATE ON eventstore_subject_key
    FOR EACH STATEMENT EXECUTE FUNCTION eventstore_subject_key_guard();
ALTER TABLE eventstore_subject_key
    ENABLE ALWAYS TRIGGER eventstore_subject_key_only_forget,
    ENABLE ALWAYS TRIGGER eventstore_subject_key_no_truncate;
"""
NO_SUBJECT_KEY_GUARD = """
DROP TRIGGER eventstore_subject_key_only_forget ON eventstore_subject_key;
DROP TRIGGER eventstore_subject_key_no_truncate ON eventstore_subject_key;
DROP FUNCTION eventstore_subject_key_guard();
"""


class Migration(migrations.Migration):
    dependencies = [("eventstore", "0003_leaner_append")]
    operations = [
        migrations.RunSQL(ALWAYS, reverse_sql=ORIGIN),
        migrations.RunSQL(SUBJECT_KEY_GUARD, reverse_sql=NO_SUBJECT_KEY_GUARD),
    ]
