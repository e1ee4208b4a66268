"""Set-at-a-time writes for rebuilds: a batch of events is folded into rows in memory, then each
row is written once (a multi-row upsert, or COPY for rows that are only ever inserted).

A `Table` knows its columns and their SQL types from the catalog, so a projection names its
table and key and nothing else:

    accounts = Table("ledger_account", key=("account_id",))
    rows = accounts.load(cur, ids)          # the rows that already exist, by key
    ...fold events into rows...
    accounts.upsert(cur, rows.values())     # one statement for the whole batch

Unqualified names resolve through `search_path`, which a rebuild points at its scratch schema.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from psycopg import sql


class Table:
    def __init__(self, name: str, key: Sequence[str], skip: Sequence[str] = ()) -> None:
        """`skip`: generated columns the writer leaves to the database (an identity id)."""
        self.name, self.key, self.skip = name, tuple(key), set(skip)
        self._types: dict[str, str] | None = None

    def types(self, cur: Any) -> dict[str, str]:
        """Column name -> SQL type, as the table in the current search_path has them."""
        if self._types is None:
            cur.execute(
                "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
                "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
                [self.name],
            )
            self._types = {name: kind for name, kind in cur.fetchall() if name not in self.skip}
        return self._types

    def columns(self, cur: Any) -> list[str]:
        return list(self.types(cur))

    def _unnest(self, cur: Any, columns: Sequence[str]) -> sql.Composed:
        types = self.types(cur)
        return sql.SQL("unnest({})").format(
            sql.SQL(", ").join(sql.SQL("%s::{}[]").format(sql.SQL(types[c])) for c in columns)
        )

    def load(self, cur: Any, keys: Iterable[Any]) -> dict[Any, dict[str, Any]]:
        """The existing rows with these keys (a key is a value, or a tuple for a composite key)."""
        keys = list(keys)
        if not keys:
            return {}
        columns = self.columns(cur)
        composite = len(self.key) > 1
        arrays = [list(k) for k in zip(*keys, strict=True)] if composite else [keys]
        query = sql.SQL("SELECT {cols} FROM {table} WHERE ({key}) IN (SELECT * FROM {src})").format(
            cols=sql.SQL(", ").join(map(sql.Identifier, columns)),
            table=sql.Identifier(self.name),
            key=sql.SQL(", ").join(map(sql.Identifier, self.key)),
            src=self._unnest(cur, self.key),
        )
        cur.execute(query.as_string(None), arrays)
        out = {}
        for values in cur.fetchall():
            row = dict(zip(columns, values, strict=True))
            out[tuple(row[k] for k in self.key) if composite else row[self.key[0]]] = row
        return out

    def cached(
        self, cur: Any, cache: dict[Any, dict[str, Any] | None], keys: Iterable[Any], complete: bool = False
    ) -> None:
        """Fill `cache` with the rows of these keys (None where there is none), querying only
        the keys it does not know yet: a rebuild keeps its cache across batches. `complete`: the
        cache has seen every row the table holds (a replay from zero), so nothing is queried."""
        missing = [k for k in dict.fromkeys(keys) if k not in cache]
        if missing and complete:
            cache.update(dict.fromkeys(missing))
        elif missing:
            found = self.load(cur, missing)
            for k in missing:
                cache[k] = found.get(k)

    def upsert(self, cur: Any, rows: Iterable[dict[str, Any]]) -> None:
        """Insert the rows, or overwrite every column of the ones whose key exists: one statement."""
        rows = list(rows)
        if not rows:
            return
        columns = self.columns(cur)
        rest = [c for c in columns if c not in self.key]
        query = sql.SQL(
            "INSERT INTO {table} ({cols}) SELECT * FROM {src} ON CONFLICT ({key}) DO UPDATE SET {updates}"
        ).format(
            table=sql.Identifier(self.name),
            cols=sql.SQL(", ").join(map(sql.Identifier, columns)),
            src=self._unnest(cur, columns),
            key=sql.SQL(", ").join(map(sql.Identifier, self.key)),
            updates=sql.SQL(", ").join(sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in rest),
        )
        cur.execute(query.as_string(None), [_one_type([row[c] for row in rows]) for c in columns])

    def copy(self, cur: Any, lines: Iterable[str], columns: Sequence[str]) -> None:
        """Append rows that are only ever inserted, given as lines of COPY's text format (one
        f-string a row is far cheaper than adapting each value): see `text` and NULL."""
        query = sql.SQL("COPY {table} ({cols}) FROM STDIN").format(
            table=sql.Identifier(self.name), cols=sql.SQL(", ").join(map(sql.Identifier, columns))
        )
        raw = getattr(cur, "cursor", cur)  # Django's wrapper around the psycopg cursor
        with raw.copy(query) as copy:
            copy.write("".join(lines))


def _one_type(values: list[Any]) -> list[Any]:
    """A column's values as one Python type, which psycopg needs to send a list as an array. A
    numeric column's values read back from the table are Decimal, those computed in memory int
    (a rebuild that resumes without its memo, after a lost connection or on another worker, has
    both in one batch)."""
    kinds = {type(v) for v in values if v is not None}
    if len(kinds) > 1 and kinds <= {int, Decimal}:
        return [None if v is None else Decimal(v) for v in values]
    return values


NULL = "\\N"  # COPY's text format spells NULL so
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def text(value: str) -> str:
    """A string as a field of COPY's text format."""
    return value.translate(_ESCAPES)
