"""`export_events` while appends go on: the file is the log's prefix up to the head the export saw
when it started, in read order, with nothing missing, even an event whose transaction was still
open (below the head) when the export began."""

from __future__ import annotations

import io
import threading
from uuid import uuid4

import orjson
from django.db import connections, transaction

from eventstore.backup import export_log, read_stored
from eventstore.records import NO_STREAM, START, Checkpoint
from eventstore.store import EventStore
from tests.support import Added, Opened


def exported(out: io.BytesIO) -> tuple[dict, list[dict]]:
    lines = [orjson.loads(line) for line in out.getvalue().splitlines()]
    return lines[0], [line for line in lines if line["kind"] == "event"]


def log_until(store: EventStore, head: Checkpoint) -> list[str]:
    ids, after = [], START
    while page := read_stored(store, after, 1000):
        ids += [str(e.event_id) for e in page if e.checkpoint <= head]
        after = page[-1].checkpoint
    return ids


def test_an_export_waits_for_a_transaction_open_below_its_head(store):
    late, appended, release = uuid4(), threading.Event(), threading.Event()

    def slow_append() -> None:
        try:
            with transaction.atomic():
                EventStore().append(late, "tally", [Opened(name="late")], expected_version=NO_STREAM)
                appended.set()
                release.wait(10)
        finally:
            connections.close_all()

    slow = threading.Thread(target=slow_append)
    slow.start()
    assert appended.wait(10)
    store.append(uuid4(), "tally", [Opened(name="after")], expected_version=NO_STREAM)  # the head, above it
    threading.Timer(0.5, release.set).start()  # the export starts before the slow transaction commits
    out = io.BytesIO()
    summary = export_log(out, store=store, page=7)
    slow.join()

    header, events = exported(out)
    head = Checkpoint(header["head"]["tx_id"], header["head"]["position"])
    assert [e["event_id"] for e in events] == log_until(store, head)
    assert str(late) in {e["stream_id"] for e in events}
    assert summary.events == len(events)


def test_an_export_during_appends_is_the_logs_prefix_up_to_its_head(store):
    stop = threading.Event()

    def append() -> None:
        try:
            s = EventStore()
            while not stop.is_set():
                s.append(uuid4(), "tally", [Opened(name="n"), Added(amount=1)], expected_version=NO_STREAM)
        finally:
            connections.close_all()

    writers = [threading.Thread(target=append) for _ in range(2)]
    for writer in writers:
        writer.start()
    try:
        store.append(uuid4(), "tally", [Opened(name="first")], expected_version=NO_STREAM)
        out = io.BytesIO()
        summary = export_log(out, store=store, page=50)
    finally:
        stop.set()
        for writer in writers:
            writer.join()
    header, events = exported(out)
    head = Checkpoint(header["head"]["tx_id"], header["head"]["position"])
    assert [e["event_id"] for e in events] == log_until(store, head)
    assert summary.events == len(events) > 0
    assert orjson.loads(out.getvalue().splitlines()[-1]) == {
        "kind": "end",
        "events": summary.events,
        "streams": summary.streams,
        "tombstones": summary.tombstones,
        "subject_keys": summary.subject_keys,
    }
