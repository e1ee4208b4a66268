"""Two database roles, so that append-only does not depend on the application's goodwill.

The triggers that refuse UPDATE, DELETE and TRUNCATE on the log belong to the role that created
the table, and a table's owner can disable or drop them. So the role the application runs as
(`DATABASE_URL`) must not be that owner: an owner role (`DATABASE_OWNER_URL`, the database alias
`owner`) runs the migrations and owns the log; the application role may only INSERT and SELECT
on it. With one URL, one role does everything, as before, and nothing here runs.

`manage.py migrate` (eventstore/management/commands/migrate.py) runs as the owner when one is
configured: `audit` first (an application role that could change history anyway stops the
migration), then the migrations, then `secure`, which (again, at every run) grants the
application role what it needs:

- full DML (SELECT, INSERT, UPDATE, DELETE, TRUNCATE) on every table of the schema, and on the
  tables later migrations make (default privileges), and the use of their sequences;
- on the log only SELECT and INSERT (its identity needs no sequence privilege); on snapshots
  SELECT, INSERT, UPDATE, DELETE (they are sealed, see `eventstore.repository`); on subject keys
  SELECT, INSERT, UPDATE (forgetting; a trigger lets UPDATE do nothing else); on tombstones
  SELECT, INSERT (a tombstone is for good); on archived events only SELECT; on `django_migrations` only SELECT;
- CONNECT and CREATE on the database and USAGE and CREATE on the schema: rebuilds make scratch
  schemas and move their new tables into place;
- ownership of the read-model tables that blue/green rebuilds drop and replace (every table a
  rebuild swaps in is the application's anyway); upper layers name them in `app_owned_tables`.
  The owner must be a member of the application role, to hand them over and to alter them in
  later migrations.

Work that needs more (retention, archiving, forgetting in bulk, imports) runs as the owner role
or through SECURITY DEFINER functions the owner makes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from psycopg import sql

OWNER_ALIAS = "owner"

# Tables the application role must own: read models that rebuilds drop and replace. Upper layers
# add a callable naming theirs from their AppConfig.ready() (projections: its registry's tables).
app_owned_tables: list[Callable[[], Iterable[str]]] = []

TABLE_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE, TRUNCATE"
SEQUENCE_PRIVILEGES = "USAGE, SELECT, UPDATE"
# The tables the application role may not do everything with, and what it may do.
PROTECTED = {
    "eventstore_event": "SELECT, INSERT",
    "eventstore_snapshot": "SELECT, INSERT, UPDATE, DELETE",
    "eventstore_subject_key": "SELECT, INSERT, UPDATE",
    "eventstore_tombstone": "SELECT, INSERT",
    "eventstore_archived_event": "SELECT",
    "django_migrations": "SELECT",
}
LOG_TABLES = (
    "eventstore_event",
    "eventstore_snapshot",
    "eventstore_subject_key",
    "eventstore_tombstone",
    "eventstore_archived_event",
)

# What would let the application role change history anyway; each row: a problem, or none.
AUDIT = """
WITH app AS (SELECT oid, rolsuper, rolcreaterole FROM pg_roles WHERE rolname = %(app)s)
SELECT 'it is a superuser' FROM app WHERE rolsuper
UNION ALL
SELECT 'it may create roles (CREATEROLE), and so make itself a member of any role' FROM app WHERE rolcreaterole
UNION ALL
SELECT 'it is a member of the owner role ' || current_user FROM app WHERE pg_has_role(app.oid, current_user, 'MEMBER')
UNION ALL
SELECT 'it owns the database ' || datname FROM pg_database, app WHERE datname = current_database() AND datdba = app.oid
UNION ALL
SELECT 'it owns the schema ' || nspname FROM pg_namespace, app WHERE nspname = current_schema() AND nspowner = app.oid
UNION ALL
SELECT 'it owns the table ' || relname FROM pg_class, app
WHERE relnamespace = current_schema()::regnamespace AND relname = ANY(%(log)s) AND relowner = app.oid
UNION ALL
SELECT 'it owns the function ' || p.oid::regprocedure || ', which the owner could run unawares'
FROM pg_proc p, app WHERE p.proowner = app.oid
"""

FIXES = """\
As a superuser (docs/deployment.md, "The database roles"): ALTER ROLE {app} NOSUPERUSER NOCREATEROLE;
REVOKE {owner} FROM {app}; ALTER DATABASE {db} OWNER TO {owner}; in the database,
REASSIGN OWNED BY {app} TO {owner} (migrate hands the read models back), and find out where
any function the application role owns came from before you drop it."""


def app_role() -> str | None:
    """The application role (DATABASE_URL's user) when an owner role is configured, else None."""
    if OWNER_ALIAS not in settings.DATABASES:
        return None
    return str(settings.DATABASES["default"]["USER"]) or None


def migrating_alias() -> str:
    """The database alias `migrate` runs as when not told: the owner's, when configured."""
    return OWNER_ALIAS if OWNER_ALIAS in settings.DATABASES else "default"


def audit(cur: Any, app: str) -> list[str]:
    """Why the application role could still change history, as seen by the owner role (`cur`)."""
    cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [app])
    if cur.fetchone() is None:
        return [f"the role {app} does not exist"]
    cur.execute(AUDIT, {"app": app, "log": list(LOG_TABLES)})
    return [row[0] for row in cur.fetchall()]


def explain(problems: list[str], app: str, owner: str, database: str) -> str:
    listed = "\n".join(f"- {problem}" for problem in problems)
    fixes = FIXES.format(app=app, owner=owner, db=database)
    return f"The application role {app} could still change the event log:\n{listed}\n{fixes}"


def secure(cur: Any, app: str) -> None:
    """Grant the application role its privileges and hand it the read models (run as the owner,
    in one transaction: the log never shows more privileges than these, even for a moment)."""
    role = sql.Identifier(app)
    cur.execute("SELECT current_database(), current_schema(), current_user")
    database, schema_name, owner = cur.fetchone()
    schema = sql.Identifier(schema_name)
    on_database = sql.SQL("GRANT CONNECT, CREATE ON DATABASE {} TO {}").format(sql.Identifier(database), role)
    _grant_missing(cur, app, "has_database_privilege(%s, current_database(), %s)", ("CONNECT", "CREATE"), on_database)
    on_schema = sql.SQL("GRANT USAGE, CREATE ON SCHEMA {} TO {}").format(schema, role)
    _grant_missing(cur, app, "has_schema_privilege(%s, current_schema(), %s)", ("USAGE", "CREATE"), on_schema)
    # Every table and sequence the owner can grant on (its own, and the application's read models;
    # not what a third role, say a superuser's extension, put in the schema).
    cur.execute(
        "SELECT c.oid::regclass::text, c.relkind = 'S' FROM pg_class c "
        "WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') "
        "AND pg_has_role(current_user, c.relowner, 'USAGE') ORDER BY 1"
    )
    for relation, is_sequence in cur.fetchall():
        privileges = SEQUENCE_PRIVILEGES if is_sequence else TABLE_PRIVILEGES
        kind = "SEQUENCE" if is_sequence else "TABLE"
        cur.execute(sql.SQL(f"GRANT {privileges} ON {kind} {{}} TO {{}}").format(sql.SQL(relation), role))
    for kind, privileges in (("TABLES", TABLE_PRIVILEGES), ("SEQUENCES", SEQUENCE_PRIVILEGES)):
        cur.execute(
            sql.SQL(f"ALTER DEFAULT PRIVILEGES IN SCHEMA {{}} GRANT {privileges} ON {kind} TO {{}}").format(
                schema, role
            )
        )
    for table, privileges in PROTECTED.items():
        name = sql.Identifier(schema_name, table)
        if not _exists(cur, name):
            continue
        cur.execute(sql.SQL("REVOKE ALL ON {} FROM {}").format(name, role))
        cur.execute(sql.SQL("GRANT {} ON {} TO {}").format(sql.SQL(privileges), name, role))
        cur.execute(
            "SELECT s.oid::regclass::text FROM pg_depend d JOIN pg_class s ON s.oid = d.objid "
            "WHERE d.classid = 'pg_class'::regclass AND d.refobjid = %s::regclass AND s.relkind = 'S'",
            [name.as_string(None)],
        )
        for (sequence,) in cur.fetchall():  # the identity: nextval needs no privilege, setval must not be had
            cur.execute(sql.SQL("REVOKE ALL ON SEQUENCE {} FROM {}").format(sql.SQL(sequence), role))
    _hand_over(cur, app, owner, schema_name)


def _grant_missing(cur: Any, app: str, check: str, privileges: tuple[str, ...], grant: sql.Composed) -> None:
    """Grant only what is missing: on a database or schema the owner role does not own (a DBA's),
    a GRANT fails even where the DBA has granted everything already."""

    def missing() -> list[str]:
        held = []
        for privilege in privileges:
            cur.execute(f"SELECT {check}", [app, privilege])
            held.append(cur.fetchone()[0])
        return [p for p, has in zip(privileges, held, strict=True) if not has]

    if missing():
        cur.execute(grant)
        if lacking := missing():
            raise PermissionError(
                f"the application role {app} still lacks {', '.join(lacking)}: {grant.as_string(None)}"
            )


def _exists(cur: Any, table: sql.Identifier) -> bool:
    cur.execute("SELECT to_regclass(%s) IS NOT NULL", [table.as_string(None)])
    return bool(cur.fetchone()[0])


def _hand_over(cur: Any, app: str, owner: str, schema: str) -> None:
    tables = sorted({table for source in app_owned_tables for table in source()})
    cur.execute(
        "SELECT relname FROM pg_class WHERE relnamespace = %s::regnamespace AND relname = ANY(%s) "
        "AND relkind IN ('r', 'p') AND relowner <> (SELECT oid FROM pg_roles WHERE rolname = %s) ORDER BY relname",
        [sql.Identifier(schema).as_string(None), tables, app],
    )
    pending = [row[0] for row in cur.fetchall()]
    if not pending:
        return
    cur.execute("SELECT pg_has_role(current_user, %s, 'MEMBER')", [app])
    if not cur.fetchone()[0]:
        raise PermissionError(
            f"the owner role {owner} must be a member of the application role {app} to hand it the read models "
            f"({', '.join(pending)}), which rebuilds replace: as a superuser, GRANT {app} TO {owner}"
        )
    for table in pending:
        cur.execute(sql.SQL("ALTER TABLE {} OWNER TO {}").format(sql.Identifier(schema, table), sql.Identifier(app)))
