"""Tracebacks fit to be shown to anyone who may read the console: where it failed, never what
it was handling.

A parked event's traceback (and a failed rebuild's) is stored in the database and shown to every
viewer, in the console and in GET /api/projections. An exception's message, and its notes, may
quote the values it choked on: a pydantic error's `input_value=...`, an f-string with a payload
field, a connection string with its password. The events a handler is given carry decrypted
personal data, and a copy stored here would outlive the destruction of its subject's key. So what
is recorded is the stack (file, line, function and the source line of every frame) and the
qualified type of every exception in the chain, in Python's own layout, and nothing the exception
says, but for a database error its SQLSTATE and the names of the schema objects it concerns
(table, column, type, constraint), which are structure, not data (unlike its message and detail:
"Failing row contains ..."). Log lines show exceptions the same way (app/core/logs.py formats
every exception any process logs with `redacted`): no personal data in the logs either.
"""

from __future__ import annotations

import traceback

import psycopg

# The first line of every redacted traceback; also how a text recorded before redaction (Python's
# "Traceback (most recent call last):") is told apart and withheld (see `shown`).
HEADER = "Traceback (most recent call last; messages not recorded):\n"
WITHHELD = "(recorded before tracebacks were redacted: see the worker's log, or retry to record it again)"
CAUSE = "\nThe above exception was the direct cause of the following exception:\n\n"
CONTEXT = "\nDuring handling of the above exception, another exception occurred:\n\n"
MAX_CHAIN = 10  # exceptions followed back through __cause__ / __context__
MAX_GROUP = 15  # sub-exceptions shown of an exception group


def type_name(exc: BaseException) -> str:
    """The exception's qualified type, and for a database error what identifies it without data."""
    cls = type(exc)
    name = cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    if isinstance(exc, psycopg.Error) and exc.sqlstate:
        diag = exc.diag
        found = [
            ("schema", diag.schema_name),
            ("table", diag.table_name),
            ("column", diag.column_name),
            ("type", diag.datatype_name),
            ("constraint", diag.constraint_name),
        ]
        name += f" (SQLSTATE {exc.sqlstate}" + "".join(f", {what} {value}" for what, value in found if value) + ")"
    return name


def _one(exc: BaseException) -> list[str]:
    """One exception without its message: the header, its frames, its type (and, for a group,
    each sub-exception the same way, with its own chain)."""
    lines = [HEADER, *traceback.StackSummary.extract(traceback.walk_tb(exc.__traceback__)).format()]
    lines.append(type_name(exc) + "\n")
    if isinstance(exc, BaseExceptionGroup):
        for n, sub in enumerate(exc.exceptions[:MAX_GROUP], 1):
            lines.append(f"+---------------- {n} ----------------\n")
            lines.append(redacted(sub))
        if len(exc.exceptions) > MAX_GROUP:
            lines.append(f"+---------------- and {len(exc.exceptions) - MAX_GROUP} more ----------------\n")
    return lines


def redacted(exc: BaseException) -> str:
    """The exception's traceback as Python prints it, its chain included, without any message or note."""
    chain: list[tuple[BaseException, str]] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    joint = ""
    while current is not None and id(current) not in seen and len(chain) < MAX_CHAIN:
        seen.add(id(current))
        chain.append((current, joint))
        if current.__cause__ is not None:
            current, joint = current.__cause__, CAUSE
        elif current.__context__ is not None and not current.__suppress_context__:
            current, joint = current.__context__, CONTEXT
        else:
            current = None
    out: list[str] = []
    for item, joint in reversed(chain):  # the first cause first, as Python prints it
        out.extend(_one(item))
        if joint:
            out.append(joint)
    return "".join(out)


def shown(recorded: str) -> str:
    """What may be shown of a recorded traceback: a redacted one as it is; one recorded by an
    older version (the full text, which may quote personal data) not at all."""
    if not recorded or recorded.startswith(HEADER):
        return recorded
    return WITHHELD
