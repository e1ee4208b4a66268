"""The store's fast path through libpq: prepared appends, binary reads, client-made event ids.

Reads ask for binary results and decode every column in C: the server then sends UUIDs,
integers, xid8 and times as they are stored instead of formatting them as text, psycopg loads
them with its C loaders (its own timestamptz loader, not the Python one Django installs for
text), and data and metadata come as their JSON text in a bytea (`textsend(data::text)`: a
cast to json would parse the text again on the server), straight into orjson. Rows become
RecordedEvents through tuple.__new__, again without a Python frame.

Appends run a statement prepared once per shape and connection straight through
`PGconn.exec_prepared`, with the UUIDs bound as 16 binary bytes.
"""

from __future__ import annotations

import functools
import gc
import weakref
from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID, SafeUUID

import orjson
import psycopg
from psycopg import abc as pg_abc
from psycopg import errors as pg_errors
from psycopg import pq
from psycopg.adapt import Loader
from psycopg.pq import Format

from eventstore.ids import new_event_ids
from eventstore.records import NewEvent, RecordedEvent
from eventstore.statements import AppendStatement

XID8_OID = 5069


class JsonTextInBytesLoader(Loader):
    format = Format.BINARY
    # A builtin, so not bound as a method: psycopg calls orjson directly (no Python frame per value).
    load = orjson.loads  # type: ignore[assignment]  # the base declares a method; this is a plain callable


def recorded_event_row(cursor: Any) -> Callable[[Sequence[Any]], RecordedEvent]:
    return _MAKE_RECORDED_EVENT


_MAKE_RECORDED_EVENT = functools.partial(tuple.__new__, RecordedEvent)


def _loader(type_name: str, format: Format) -> type[pg_abc.Loader]:
    """psycopg's own loader of a built-in type (looked up once, at import)."""
    loader = psycopg.adapters.get_loader(psycopg.adapters.types[type_name].oid, format)
    if loader is None:
        raise LookupError(f"psycopg has no {format.name} loader for {type_name}")
    return loader


INT_LOADER = _loader("int8", Format.TEXT)
TIMESTAMPTZ_BINARY_LOADER = _loader("timestamptz", Format.BINARY)
INT_BINARY_LOADER = _loader("int8", Format.BINARY)


def read_cursor(connection: psycopg.Connection) -> psycopg.Cursor[RecordedEvent]:
    """A cursor whose rows are RecordedEvents, built without a Python call per row or column."""
    cur = psycopg.Cursor(connection, row_factory=recorded_event_row)
    cur.format = Format.BINARY
    cur.adapters.register_loader("bytea", JsonTextInBytesLoader)
    cur.adapters.register_loader("timestamptz", TIMESTAMPTZ_BINARY_LOADER)
    cur.adapters.register_loader(XID8_OID, INT_BINARY_LOADER)
    return cur


def fetch_all(cur: psycopg.Cursor[RecordedEvent]) -> list[RecordedEvent]:
    """Every row of a read cursor's result, as stored (neither upcast nor revealed)."""
    # A page allocates thousands of dicts at once: collecting garbage in between only costs.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return cur.fetchall()
    finally:
        if enabled:
            gc.enable()


_set_slot, _new_object, _UNKNOWN = object.__setattr__, object.__new__, SafeUUID.unknown


def event_ids(batch: Sequence[NewEvent]) -> list[UUID]:
    """Each event's id: its own, or a new time-ordered one (eventstore/ids.py)."""
    ids = [e.event_id for e in batch]
    missing = sum(1 for i in ids if i is None)
    if not missing:
        return ids  # type: ignore[return-value]  # no None in it: the hot path skips a copy to prove it
    made = iter(new_event_ids(missing))
    return [uuid_from_bytes(next(made)) if i is None else i for i in ids]


def uuid_from_bytes(raw: bytes) -> UUID:
    """UUID(bytes=raw) without its argument checks, which cost more than the rest of an event's append."""
    value = _new_object(UUID)
    _set_slot(value, "int", int.from_bytes(raw))
    _set_slot(value, "is_safe", _UNKNOWN)
    return value


# Statements prepared on each libpq connection (connections come and go with Django's). This is
# only what we believe: psycopg, which owns the connection, sends DEALLOCATE ALL after a ROLLBACK
# (also to a savepoint), a DROP or an ALTER whenever it has prepared statements of its own, and
# a pooler or a DISCARD ALL may do the same; then the server answers "prepared statement does not
# exist" and we prepare again (see exec_prepared).
_prepared: weakref.WeakKeyDictionary[Any, set[bytes]] = weakref.WeakKeyDictionary()


def exec_prepared(conn: psycopg.Connection, statement: AppendStatement, values: list[bytes | None]) -> Any:
    """Run a prepared statement straight through libpq: one C call, GIL released while waiting.

    The append is the hot path of every command; psycopg's cursor machinery costs more
    client CPU than the statement's own round trip on a small machine.

    A statement deallocated behind our back is prepared again and run once more when the failed
    attempt took no transaction down with it (autocommit). Inside a transaction the failed
    attempt has aborted it, and nothing more can run in it: InvalidSqlStatementName is raised,
    and the caller, who ran this in a savepoint, rolls back to it and calls again (the store's
    `_insert` does). Never catch it and carry on in the same transaction.
    """
    pgconn = conn.pgconn
    names = _prepared.setdefault(conn, set())
    if statement.name not in names:
        result = pgconn.prepare(statement.name, statement.text, statement.types)
        if result.status != pq.ExecStatus.COMMAND_OK:
            raise pg_errors.error_from_result(result, encoding=conn.info.encoding)
        names.add(statement.name)
    # None is a NULL parameter, which libpq takes; psycopg's annotation leaves it out.
    result = pgconn.exec_prepared(statement.name, values, statement.formats)  # type: ignore[arg-type]
    if result.status != pq.ExecStatus.TUPLES_OK:
        error = pg_errors.error_from_result(result, encoding=conn.info.encoding)
        if isinstance(error, pg_errors.InvalidSqlStatementName):  # deallocated behind our back
            names.discard(statement.name)
            if pgconn.transaction_status == pq.TransactionStatus.IDLE:  # autocommit: nothing was doomed
                return exec_prepared(conn, statement, values)
        raise error
    return result
