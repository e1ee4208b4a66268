"""The two systems every W workload compares: "raw" (a plain psycopg 3 client of the reference
table) and "eventfold" (the public EventStore API), each as a writer and a reader.

Eventfold's writer and reader use Django's default connection: they run inside
`common.scratch()`, so that they see the scratch schema.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

import psycopg
from django.db import connections

from bench import common
from eventstore.records import NO_STREAM, START, NewEvent
from eventstore.store import EventStore

RAW_INSERT = "INSERT INTO events (stream_id, version, type, data, metadata) VALUES (%s, %s, %s, %s::jsonb, %s::jsonb)"
RAW_READ = (
    "SELECT global_position, stream_id, version, type, data::text, metadata::text FROM events "
    "WHERE global_position > %s ORDER BY global_position LIMIT 1000"
)
TYPE = "bench.Recorded"
CATEGORY = "bench"


# -- writers: one append of `datas` to a stream at `version` (0: new stream) ------------------
class Writer(Protocol):
    def prepare(self, datas: list[dict], /) -> list[Any]: ...  # the system's events, made before the clock starts

    def append(self, stream_id: Any, version: int, events: list[Any], /) -> None: ...

    def close(self) -> None: ...


class RawWriter:
    def __init__(self) -> None:
        self.conn = psycopg.connect(common.conninfo(), autocommit=True)
        self.meta = json.dumps(common.metadata())

    def prepare(self, datas: list[dict]) -> list[dict]:
        return datas  # dicts are its events: serialised in each append, as the reference does

    def append(self, stream_id: Any, version: int, datas: list[dict]) -> None:
        sid = str(stream_id)
        if len(datas) == 1:
            self.conn.execute(RAW_INSERT, (sid, version + 1, TYPE, json.dumps(datas[0]), self.meta))
            return
        rows = ", ".join(["(%s, %s, %s, %s::jsonb, %s::jsonb)"] * len(datas))
        params: list[Any] = []
        for i, d in enumerate(datas, start=version + 1):
            params += [sid, i, TYPE, json.dumps(d), self.meta]
        self.conn.execute(f"INSERT INTO events (stream_id, version, type, data, metadata) VALUES {rows}", params)

    def close(self) -> None:
        self.conn.close()


class EventfoldWriter:
    def __init__(self) -> None:
        self.store = EventStore()
        self.meta = common.metadata()

    def prepare(self, datas: list[dict]) -> list[NewEvent]:
        """The application's events, made before they are appended (as the raw side's dicts are):
        the append validates and serialises them, which is what is timed."""
        return [NewEvent(common.Recorded.model_validate(d), self.meta) for d in datas]

    def append(self, stream_id: Any, version: int, events: list[NewEvent]) -> None:
        self.store.append(stream_id, CATEGORY, events, expected_version=version or NO_STREAM)

    def close(self) -> None:
        connections.close_all()


WRITERS: dict[str, Callable[[], Writer]] = {"raw": RawWriter, "eventfold": EventfoldWriter}


# -- readers: the log page by page; each `read` goes on from where the last one stopped -------
class Reader(Protocol):
    def rewind(self) -> None: ...

    def read(self, limit_pages: int | None = None) -> int: ...

    def close(self) -> None: ...


class RawReader:
    def __init__(self) -> None:
        self.conn = psycopg.connect(common.conninfo(), autocommit=True)
        self.rewind()

    def rewind(self) -> None:
        self.after = 0

    def read(self, limit_pages: int | None = None) -> int:
        loads = json.loads
        count, after, pages = 0, self.after, 0
        while limit_pages is None or pages < limit_pages:
            rows = self.conn.execute(RAW_READ, (after,)).fetchall()
            if not rows:
                break
            decoded = [(p, s, v, t, loads(d), loads(m)) for p, s, v, t, d, m in rows]
            count += len(decoded)
            after = decoded[-1][0]
            pages += 1
        self.after = after
        return count

    def close(self) -> None:
        self.conn.close()


class EventfoldReader:
    def __init__(self) -> None:
        self.store = EventStore()
        self.rewind()

    def rewind(self) -> None:
        self.checkpoint = START

    def read(self, limit_pages: int | None = None) -> int:
        checkpoint, count, pages = self.checkpoint, 0, 0
        while limit_pages is None or pages < limit_pages:
            result = self.store.read_all(checkpoint, limit=1000)
            if not result.events:
                break
            count += len(result.events)
            checkpoint = result.checkpoint
            pages += 1
        self.checkpoint = checkpoint
        return count

    def close(self) -> None:
        connections.close_all()


READERS: dict[str, Callable[[], Reader]] = {"raw": RawReader, "eventfold": EventfoldReader}
