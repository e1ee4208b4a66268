"""Disaster recovery by replay: `export_events` of a seeded store, `import_events` into a fresh
database, identical read models, process managers that act on nothing twice, and an export of
the restored store that gives the same events in the same order; tombstones and archived streams
restored as they were.

Everything runs as `manage.py` processes on scratch databases of their own (two roles, as
deployed: docs/deployment.md, "The database roles"), made and dropped here with the test
server's superuser.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote
from uuid import uuid4

import orjson
import psycopg
import pytest

from tests.support import conninfo, database_server, find_superuser

ROOT = Path(__file__).resolve().parents[3]
RUN = f"{os.getpid()}_{uuid4().hex[:6]}"
OWNER, APP = f"ef_dr_owner_{RUN}", f"ef_dr_app_{RUN}"
SOURCE, RESTORED, SPARE = f"ef_dr_source_{RUN}", f"ef_dr_restored_{RUN}", f"ef_dr_spare_{RUN}"
INTERLEAVED, LIVE = f"ef_dr_interleaved_{RUN}", f"ef_dr_live_{RUN}"
OUTBOX = f"ef_dr_outbox_{RUN}"
CLOSED_SOURCE, CLOSED_RESTORED = f"ef_dr_closed_source_{RUN}", f"ef_dr_closed_restored_{RUN}"
CLOSED_SPARE = f"ef_dr_closed_spare_{RUN}"
RETAINED_SOURCE, RETAINED_RESTORED = f"ef_dr_retained_source_{RUN}", f"ef_dr_retained_restored_{RUN}"
DATABASES = (
    *(SOURCE, RESTORED, SPARE, INTERLEAVED, LIVE),
    *(CLOSED_SOURCE, CLOSED_RESTORED, CLOSED_SPARE, RETAINED_SOURCE, RETAINED_RESTORED, OUTBOX),
)
READ_MODELS = (
    "ledger_account",
    "ledger_entry",
    "ledger_transfer",
    "ledger_daily_account",
    "ledger_daily_account_currency",
)

# Run every process manager and projection over every bucket until nothing is left: what the
# workers do, here in one process, so the test knows when they are done.
SETTLE = """
from projections import processes, runner
from projections.status import BUCKET_LAG
from django.db import connection
for _ in range(50):
    for bucket in range(64):
        processes.run_all(bucket)
        runner.catch_up(bucket)
    if not processes.lagging_buckets() and not runner.lagging_buckets():
        break
print("appended", connection.cursor().execute("SELECT count(*) FROM eventstore_event").fetchone()[0])
"""
# A worker's process managers, over every bucket again and again until the file `stop` exists.
PROCESS_LOOP = """
import os, time
from projections import processes
runs = 0
while not os.path.exists({stop!r}):
    for bucket in range(64):
        processes.run_all(bucket)
    runs += 1
print("runs", runs)
"""
DEPOSIT = """
from django.db import connection
from app.ledger import handlers
from app.ledger.commands import CommandContext
cur = connection.cursor()
cur.execute("SELECT account_id FROM ledger_account WHERE status = 'open' ORDER BY account_id LIMIT 1")
handlers.account_deposit(account_id=cur.fetchone()[0], amount=1, ctx=CommandContext(actor="test"))
"""
FORGET_ONE = """
from django.db import connection
from eventstore.personal_data import SubjectKeys
cur = connection.cursor()
cur.execute("SELECT subject_id FROM eventstore_subject_key ORDER BY subject_id LIMIT 1")
print(SubjectKeys().forget(cur.fetchone()[0]))
"""

# Two accounts emptied, closed and tombstoned; their ids. The second one's close is the log's last event.
CLOSE_TWO = """
from uuid import uuid4
from app.ledger import handlers
from app.ledger.commands import CommandContext
from eventstore.store import EventStore
ctx = lambda: CommandContext(actor="test")  # a command id of its own each
ids = [uuid4(), uuid4()]
for account in ids:
    handlers.account_open(account_id=account, owner="Closed Owner", currency="EUR", ctx=ctx())
    handlers.account_deposit(account_id=account, amount=30, ctx=ctx())
    handlers.account_withdraw(account_id=account, amount=30, ctx=ctx())
    handlers.account_close(account_id=account, reason="done", ctx=ctx())
    EventStore().tombstone(account, reason="closed account")
print(*ids)
"""
ARCHIVE_ONE = """
from uuid import UUID
from eventstore import roles
from eventstore.store import EventStore
print(EventStore(using=roles.migrating_alias()).archive([UUID({stream!r})]))
"""
# What the restored store says about both accounts: tombstones, archive, an append, the API's answers.
LIFECYCLE = """
import json
from uuid import UUID, uuid4
from django.contrib.auth import get_user_model
from django.test import Client
from app.core.models import ApiToken, Profile
from eventstore.browse import LogBrowser
from eventstore.errors import StreamTombstoned
from eventstore.store import EventStore
from tests.support import Added
user, _ = get_user_model().objects.get_or_create(username="olga")
Profile.objects.update_or_create(user=user, defaults={{"role": "operator"}})
auth = {{"HTTP_AUTHORIZATION": "Bearer " + ApiToken.issue(user)[1]}}
store, out = EventStore(), {{}}
for name, stream in (("tombstoned", UUID({tombstoned!r})), ("archived", UUID({archived!r}))):
    try:
        store.append(stream, "account", [Added(amount=1)])
        refused = None
    except StreamTombstoned:
        refused = "StreamTombstoned"
    read = Client().get(f"/api/streams/{{stream}}/events", **auth)
    deposit = Client().post(
        f"/api/accounts/{{stream}}/deposits", json.dumps({{"amount": 5}}), content_type="application/json",
        HTTP_IDEMPOTENCY_KEY=str(uuid4()), **auth,
    )
    out[name] = {{
        "tombstone": store.tombstone_of(stream).reason, "archived": LogBrowser().archived(stream),
        "append": refused, "read": [read.status_code, read.json()["error"]],
        "deposit": [deposit.status_code, deposit.json()["error"]], "version": store.stream_version(stream),
    }}
print(json.dumps(out))
"""

# Retention rules, set as a deployment's settings would set them, then a command in the same process.
WITH_RETENTION = """
import json, time
from django.conf import settings
from django.core.management import call_command
settings.EVENTFOLD_RETENTION = {{"expiring": {{"max_count": 2}}, "fleeting": {{"max_age": 1}}}}
import tests.support  # the test event types
"""
# A stream whose first events expired (max_count) and one whose only event did (max_age), both
# tombstoned; then the export.
EXPIRE_AND_EXPORT = (
    WITH_RETENTION
    + """
from uuid import UUID
from eventstore.store import EventStore
from tests.support import Added, Opened
store = EventStore()
trimmed, gone = UUID({trimmed!r}), UUID({gone!r})
store.append(trimmed, "expiring", [Opened(name="a"), *(Added(amount=i) for i in range(1, 5))])
store.tombstone(trimmed, reason="trimmed")
store.append(gone, "fleeting", [Opened(name="b")])
store.tombstone(gone, reason="gone")
time.sleep(1.2)
call_command("export_events", {path!r}, "--no-progress")
"""
)
IMPORT_REFUSED = """
import tests.support
from django.core.management import CommandError, call_command
try:
    call_command("import_events", {path!r}, "--no-progress")
except CommandError as refused:
    print("refused:", refused)
"""
IMPORT_THEN_CHECK = (
    WITH_RETENTION
    + """
from uuid import UUID
from eventstore.errors import StreamTombstoned
from eventstore.store import EventStore
from tests.support import Added
call_command("import_events", {path!r}, "--no-progress", "--json")
store, out = EventStore(), {{}}
for stream in (UUID({trimmed!r}), UUID({gone!r})):
    try:
        store.append(stream, "expiring", [Added(amount=1)])
    except StreamTombstoned:
        out[str(stream)] = [store.tombstone_of(stream).reason, store.stream_version(stream)]
call_command("export_events", {again!r}, "--no-progress")
print(json.dumps(out))
"""
)


def url(dbname: str, user: str) -> str:
    server = database_server()
    port = f":{server['port']}" if server["port"] else ""
    return f"postgresql://{quote(user)}@{quote(server['host'], safe='')}{port}/{dbname}"


def manage(database: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    environ = dict(
        os.environ,
        DATABASE_URL=url(database, APP),
        DATABASE_OWNER_URL=url(database, OWNER),
        CELERY_BROKER_URL="memory://",
        EVENTFOLD_QUEUE_PREFIX=f"dr{RUN}.",
        **env,
    )
    environ.pop("TEST_DATABASE_NAME", None)
    return subprocess.run(
        [sys.executable, "manage.py", *args], env=environ, cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def ok(database: str, *args: str, **env: str) -> str:
    run = manage(database, *args, **env)
    assert run.returncode == 0, (args, run.stdout[-3000:], run.stderr[-3000:])
    return run.stdout


@pytest.fixture(scope="module")
def databases() -> Iterator[None]:
    superuser = find_superuser()
    assert superuser is not None, "these tests make scratch roles and databases: they need a superuser"
    with psycopg.connect(conninfo("postgres", *superuser), autocommit=True) as conn:
        try:
            conn.execute(f'CREATE ROLE "{OWNER}" LOGIN')
            conn.execute(f'CREATE ROLE "{APP}" LOGIN')
            conn.execute(f'GRANT "{APP}" TO "{OWNER}"')
            for name in DATABASES:
                conn.execute(f'CREATE DATABASE "{name}" OWNER "{OWNER}"')
                ok(name, "migrate", "--noinput")
            yield
        finally:
            for name in DATABASES:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            for role in (APP, OWNER):
                conn.execute(f'DROP ROLE IF EXISTS "{role}"')


@pytest.fixture(scope="module")
def seeded(databases) -> int:
    """The source: demo traffic, its transfers played out by the process manager, one person
    forgotten (and the owners' read model rebuilt since, so that it shows so)."""
    ok(SOURCE, "seed_demo", "--accounts", "10", "--operations", "300")
    ok(SOURCE, "shell", "-c", SETTLE)
    assert ok(SOURCE, "shell", "-c", FORGET_ONE).split()[-1] == "True"
    ok(SOURCE, "rebuild_projection", "account_summary")
    return int(ok(SOURCE, "shell", "-c", SETTLE).split()[-1])


@pytest.fixture(scope="module")
def closed_accounts(databases) -> tuple[str, str, int]:
    """A source with two closed, tombstoned accounts, the second archived: (its ids, how many events)."""
    ok(CLOSED_SOURCE, "seed_demo", "--accounts", "3", "--operations", "40")
    ok(CLOSED_SOURCE, "shell", "-c", SETTLE)
    tombstoned, archived = ok(CLOSED_SOURCE, "shell", "-c", CLOSE_TWO).split()[-2:]
    events = int(ok(CLOSED_SOURCE, "shell", "-c", SETTLE).split()[-1])
    assert ok(CLOSED_SOURCE, "shell", "-c", ARCHIVE_ONE.format(stream=archived)).split()[-1] == "4"
    return tombstoned, archived, events


def rows(database: str, table: str) -> list[tuple]:
    """Every row of a read model, in one order, but for a surrogate `id` (numbered as rows arrive)."""
    with psycopg.connect(conninfo(database, OWNER)) as conn:
        cur = conn.execute(f"SELECT * FROM {table}")
        keep = [i for i, column in enumerate(cur.description) if column.name != "id"]
        return sorted((tuple(row[i] for i in keep) for row in cur.fetchall()), key=repr)


def lines(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_a_restored_store_has_the_same_read_models_and_exports_the_same_events(seeded, tmp_path):
    exported = tmp_path / "source.jsonl"
    summary = orjson.loads(ok(SOURCE, "export_events", str(exported), "--json"))
    assert summary["events"] == seeded and summary["bytes"] == exported.stat().st_size
    assert summary["streams"] > 10 and summary["subject_keys"] >= 10 and summary["events_per_s"] > 0

    imported = orjson.loads(ok(RESTORED, "import_events", str(exported), "--json"))
    assert (imported["events"], imported["imported"], imported["already"]) == (seeded, seeded, 0)
    assert imported["rebuilt"]  # every projection had the whole log to fold

    for table in READ_MODELS:
        source = rows(SOURCE, table)
        assert source, table
        assert rows(RESTORED, table) == source, table

    # The process managers start at the head: running them appends nothing (no transfer acted on twice).
    assert int(ok(RESTORED, "shell", "-c", SETTLE).split()[-1]) == seeded

    again = tmp_path / "restored.jsonl"
    ok(RESTORED, "export_events", str(again))
    first, second = lines(exported), lines(again)
    assert first[0]["kind"] == second[0]["kind"] == "eventfold-export"
    # The same events in the same order, byte for byte but for the new cluster's transaction ids.
    for line in first + second:
        line.pop("tx_id", None)
    assert first[1:] == second[1:]
    assert [e["kind"] for e in first[1:]].count("event") == seeded
    forgotten = [k for k in first if k["kind"] == "subject_key" and k["wrapped_key"] is None]
    assert len(forgotten) == 1  # forgetting survives the restore: the key stays destroyed


def test_an_import_run_again_does_nothing_and_a_cut_short_one_finishes(seeded, tmp_path):
    exported = tmp_path / "source.jsonl"
    ok(SOURCE, "export_events", str(exported))
    # A first run stopped after part of the log: the file's first events only, then its keys and end.
    all_lines = exported.read_bytes().splitlines(keepends=True)
    events = [i for i, line in enumerate(all_lines) if b'"kind":"event"' in line]
    part = tmp_path / "part.jsonl"
    head = all_lines[: events[len(events) // 3]]
    keys = [line for line in all_lines if b'"kind":"subject_key"' in line]
    end = (
        orjson.dumps(
            {
                "kind": "end",
                "events": len(head) - 1,
                "streams": sum(b'"version":1,' in line for line in head[1:]),
                "tombstones": 0,
                "subject_keys": len(keys),
            }
        )
        + b"\n"
    )
    part.write_bytes(b"".join(head + keys) + end)
    ok(SPARE, "import_events", str(part), "--no-rebuild")

    finished = orjson.loads(ok(SPARE, "import_events", str(exported), "--json"))
    assert (finished["already"], finished["imported"]) == (len(head) - 1, seeded - (len(head) - 1))
    nothing = orjson.loads(ok(SPARE, "import_events", str(exported), "--json"))
    assert (nothing["imported"], nothing["already"], nothing["rebuilt"]) == (0, seeded, [])
    for table in READ_MODELS:
        assert rows(SPARE, table) == rows(SOURCE, table), table


def test_an_import_refuses_a_store_with_other_events_and_a_bad_file(seeded, tmp_path):
    exported = tmp_path / "source.jsonl"
    ok(SOURCE, "export_events", str(exported))
    original = exported.read_bytes().splitlines(keepends=True)

    def refused(content: bytes, database: str = RESTORED, **env: str) -> str:
        path = tmp_path / "bad.jsonl"
        path.write_bytes(content)
        run = manage(database, "import_events", str(path), **env)
        assert run.returncode == 1, (run.stdout[-2000:], run.stderr[-2000:])
        assert "Traceback" not in run.stderr
        return run.stderr

    # The restored store holds every event; a file of only the first third is not its start.
    events = [i for i, line in enumerate(original) if b'"kind":"event"' in line]
    third = original[: events[len(events) // 3]]
    streams = sum(b'"version":1,' in line for line in third[1:])
    counts = {"events": len(third) - 1, "streams": streams, "tombstones": 0, "subject_keys": 0}
    end = orjson.dumps({"kind": "end", **counts}) + b"\n"
    assert "loads into an empty store only" in refused(b"".join(third) + end)
    assert "the export was cut short" in refused(b"".join(original[:-1]))
    assert "line 1: not an Eventfold export" in refused(b'{"kind": "something"}\n')
    event = events[0]
    unknown = original[event].replace(b'"type":"ledger.', b'"type":"nowhere.')
    assert f"line {event + 1}: unknown event type" in refused(
        b"".join([*original[:event], unknown, *original[event + 1 :]])
    )
    twice = original[: event + 1] + original[event:]
    assert f"line {event + 2}: stream" in refused(b"".join(twice))
    master = "A" * 43  # another 32-byte key
    assert "EVENTFOLD_MASTER_KEY" in refused(b"".join(original), database=SPARE, EVENTFOLD_MASTER_KEY=master)


def test_transactions_that_ran_side_by_side_keep_their_read_order(seeded, tmp_path):
    """Two transactions of the source that drew positions out of their order (the later one in
    read order holding the lower position): the import keeps both positions and the order."""
    exported = tmp_path / "source.jsonl"
    ok(SOURCE, "export_events", str(exported))
    parsed = lines(exported)
    at = next(
        i
        for i in range(1, len(parsed) - 1)
        if parsed[i]["kind"] == parsed[i + 1]["kind"] == "event" and parsed[i]["tx_id"] < parsed[i + 1]["tx_id"]
    )
    parsed[at]["position"], parsed[at + 1]["position"] = parsed[at + 1]["position"], parsed[at]["position"]
    swapped = tmp_path / "swapped.jsonl"
    swapped.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in parsed))
    ok(INTERLEAVED, "import_events", str(swapped), "--no-rebuild")

    again = tmp_path / "again.jsonl"
    ok(INTERLEAVED, "export_events", str(again))
    restored = lines(again)
    for line in parsed + restored:
        line.pop("tx_id", None)
    assert restored[1:] == parsed[1:]
    assert restored[at + 1]["position"] < restored[at]["position"]


def test_process_managers_running_during_an_import_act_on_nothing(seeded, tmp_path):
    """A worker's process managers running all along, while the import commits a transaction every
    ten events: each transaction moves their checkpoints past its own events, so they never see one."""
    exported = tmp_path / "source.jsonl"
    ok(SOURCE, "export_events", str(exported))
    stop = tmp_path / "stop"
    loop = subprocess.Popen(
        [sys.executable, "manage.py", "shell", "-c", PROCESS_LOOP.format(stop=str(stop))],
        env=dict(
            os.environ,
            DATABASE_URL=url(LIVE, APP),
            DATABASE_OWNER_URL=url(LIVE, OWNER),
            CELERY_BROKER_URL="memory://",
            EVENTFOLD_QUEUE_PREFIX=f"dr{RUN}.",
        ),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        imported = orjson.loads(ok(LIVE, "import_events", str(exported), "--json", "--batch", "10"))
    finally:
        stop.touch()
        out, err = loop.communicate(timeout=120)
    assert loop.returncode == 0, err[-3000:]
    assert int(out.split()[-1]) >= 2  # the process managers ran while batches were committed
    assert imported["imported"] == seeded
    with psycopg.connect(conninfo(LIVE, OWNER)) as conn:
        assert conn.execute("SELECT count(*) FROM eventstore_event").fetchone()[0] == seeded
    for table in READ_MODELS:
        assert rows(LIVE, table) == rows(SOURCE, table), table


def test_tombstones_and_the_archive_survive_a_restore(closed_accounts, tmp_path):
    tombstoned, archived, events = closed_accounts
    exported = tmp_path / "source.jsonl"
    summary = orjson.loads(ok(CLOSED_SOURCE, "export_events", str(exported), "--json"))
    first = lines(exported)
    assert summary["events"] == events and summary["tombstones"] == 2
    assert first[0]["format"] == 2
    # The archived account's close is the log's last event, past the hot table's head: exported too.
    assert [e for e in first if e["kind"] == "event"][-1]["stream_id"] == archived
    marks = {t["stream_id"]: (t["reason"], t["version"], t["archived"]) for t in first if t["kind"] == "tombstone"}
    assert marks == {tombstoned: ("closed account", 4, False), archived: ("closed account", 4, True)}
    assert first[-1] == {"kind": "end", "events": events, "streams": summary["streams"], "tombstones": 2,
                         "subject_keys": summary["subject_keys"]}  # fmt: skip

    imported = orjson.loads(ok(CLOSED_RESTORED, "import_events", str(exported), "--json"))
    assert (imported["imported"], imported["tombstones"], imported["archived"], imported["waiting"]) == (
        events,
        2,
        1,
        0,
    )
    for table in READ_MODELS:
        assert rows(CLOSED_RESTORED, table) == rows(CLOSED_SOURCE, table), table

    script = LIFECYCLE.format(tombstoned=tombstoned, archived=archived)
    said = orjson.loads(ok(CLOSED_RESTORED, "shell", "-c", script).splitlines()[-1])
    for name in ("tombstoned", "archived"):
        assert said[name]["tombstone"] == "closed account", name
        assert said[name]["append"] == "StreamTombstoned", name
        assert said[name]["read"] == [410, "stream_gone"], name
        assert said[name]["deposit"] == [422, "account_closed"], name  # the domain refuses before the tombstone
        assert said[name]["version"] == 4, name
    assert (said["tombstoned"]["archived"], said["archived"]["archived"]) == (False, True)

    again = tmp_path / "restored.jsonl"
    ok(CLOSED_RESTORED, "export_events", str(again))
    second = lines(again)
    for line in first + second:
        line.pop("tx_id", None)
    assert second[1:] == first[1:]  # the same events, then the same tombstones, archived as they were

    nothing = orjson.loads(ok(CLOSED_RESTORED, "import_events", str(exported), "--json"))
    assert (nothing["imported"], nothing["already"], nothing["rebuilt"], nothing["waiting"]) == (0, events, [], 0)


def test_an_import_refuses_bad_tombstones_before_writing_anything(closed_accounts, tmp_path):
    exported = tmp_path / "source.jsonl"
    ok(CLOSED_SOURCE, "export_events", str(exported))
    original = exported.read_bytes().splitlines(keepends=True)
    at = next(i for i, line in enumerate(original) if b'"kind":"tombstone"' in line)
    tombstone = orjson.loads(original[at])

    def refused(changed: dict | bytes, where: int = at) -> str:
        line = changed if isinstance(changed, bytes) else orjson.dumps(changed) + b"\n"
        path = tmp_path / "bad.jsonl"
        path.write_bytes(b"".join([*original[:where], line, *original[where + 1 :]]))
        run = manage(CLOSED_SPARE, "import_events", str(path))
        assert run.returncode == 1, (run.stdout[-2000:], run.stderr[-2000:])
        assert "Traceback" not in run.stderr
        return run.stderr

    nowhere = {**tombstone, "stream_id": "00000000-0000-4000-8000-000000000001"}
    assert f"line {at + 1}: a tombstone for stream {nowhere['stream_id']}, which has no events" in refused(nowhere)
    assert "ends at version 3; the file's ends at 4" in refused({**tombstone, "version": 3})
    assert f"line {at + 1}: archived must be true or false" in refused({**tombstone, "archived": "yes"})
    assert f"line {at + 1}: tombstoned_at must be" in refused({**tombstone, "tombstoned_at": "yesterday"})
    assert f"line {at + 1}: not JSON" in refused(b'{"kind":"tombstone",\n')
    assert original[at + 1].startswith(b'{"kind":"tombstone"')  # the second one, in its place the first again
    assert f"line {at + 2}: stream {tombstone['stream_id']} is tombstoned twice" in refused(original[at], at + 1)
    with psycopg.connect(conninfo(CLOSED_SPARE, OWNER)) as conn:  # nothing half-written
        assert conn.execute("SELECT count(*) FROM eventstore_tombstone").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM eventstore_event").fetchone()[0] == 0
    # An export written before tombstones were exported (format 1) still loads: no tombstone line,
    # no tombstone count on its last line.
    old = [orjson.loads(line) for line in original if b'"kind":"tombstone"' not in line]
    old[0]["format"] = 1
    del old[-1]["tombstones"]
    path = tmp_path / "format1.jsonl"
    path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in old))
    loaded = orjson.loads(ok(CLOSED_SPARE, "import_events", str(path), "--json", "--no-rebuild"))
    assert (loaded["tombstones"], loaded["imported"]) == (0, len(old) - 2 - loaded["subject_keys"])
    # ... and a tombstone line in a format 1 file is refused
    old.insert(len(old) - 1, tombstone)
    path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in old))
    run = manage(CLOSED_SPARE, "import_events", str(path))
    assert run.returncode == 1 and "unknown kind 'tombstone'" in run.stderr


def test_streams_whose_events_expired_export_and_restore(databases, tmp_path):
    """Retention leaves expired events out of an export: a stream may start at a later version,
    and a tombstoned stream may have none left; the import takes both where the category has a
    retention rule, and refuses them where it has none."""
    trimmed, gone = str(uuid4()), str(uuid4())
    exported, again = tmp_path / "source.jsonl", tmp_path / "restored.jsonl"
    ok(RETAINED_SOURCE, "shell", "-c", EXPIRE_AND_EXPORT.format(trimmed=trimmed, gone=gone, path=str(exported)))
    first = lines(exported)
    assert [(e["stream_id"], e["version"]) for e in first if e["kind"] == "event"] == [(trimmed, 4), (trimmed, 5)]
    marks = {t["stream_id"]: t["version"] for t in first if t["kind"] == "tombstone"}
    assert marks == {trimmed: 5, gone: 0}

    # Without the rules, a stream starting at version 4 is a stream that lost events: refused.
    refusal = ok(RETAINED_RESTORED, "shell", "-c", IMPORT_REFUSED.format(path=str(exported)))
    assert f"stream {trimmed} has version 4 where 1 was due (no retention rule for 'expiring' here" in refusal

    script = IMPORT_THEN_CHECK.format(trimmed=trimmed, gone=gone, path=str(exported), again=str(again))
    said = orjson.loads(ok(RETAINED_RESTORED, "shell", "-c", script).splitlines()[-1])
    assert said == {trimmed: ["trimmed", 5], gone: ["gone", 0]}  # both refuse appends
    second = lines(again)
    for line in first + second:
        line.pop("tx_id", None)
    assert second[1:] == first[1:]


def test_the_integration_publisher_republishes_none_of_the_restored_history(seeded, tmp_path, settings):
    """The publisher is a process manager: after an import it starts at the head with the others,
    so consumers get nothing twice of what the old deployment published; what happens next is
    published. A queue bound with `ledger.#` on the stack's broker, on an exchange of the test's own."""
    from kombu import Queue

    from app.integration import transport

    settings.EVENTFOLD_EXCHANGE = f"test.{uuid4().hex}"
    env = {"INTEGRATION_BROKER_URL": settings.INTEGRATION_BROKER_URL, "EVENTFOLD_EXCHANGE": settings.EVENTFOLD_EXCHANGE}
    queue = Queue(
        f"test.dr.{uuid4().hex}", transport.exchange(), routing_key="ledger.#", durable=True, auto_delete=False
    )
    exported = tmp_path / "source.jsonl"
    ok(SOURCE, "export_events", str(exported))
    with transport.connection() as conn:
        bound = queue(conn.default_channel)
        bound.declare()
        try:
            ok(OUTBOX, "import_events", str(exported))
            ok(OUTBOX, "shell", "-c", SETTLE, **env)
            assert bound.get(no_ack=True) is None  # the seeded history's thousands of events: none published
            ok(OUTBOX, "shell", "-c", DEPOSIT, **env)
            ok(OUTBOX, "shell", "-c", SETTLE, **env)
            message = bound.get(no_ack=True)
            assert message is not None and message.delivery_info["routing_key"] == "ledger.funds_deposited.v1"
            assert bound.get(no_ack=True) is None
        finally:
            bound.delete()
            transport.exchange()(conn.default_channel).delete()
