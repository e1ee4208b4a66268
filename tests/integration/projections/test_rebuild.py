"""Blue/green rebuilds on the real worker, and verification by replay."""

import os
import signal
import threading
from uuid import uuid4

import kombu.exceptions
import psycopg
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import OperationalError, connection, connections

from app.celery import app as celery_app
from app.ledger import handlers
from app.ledger.commands import CommandContext
from app.ledger.models import AccountSummary, Entry
from eventstore.store import EventStore
from projections import rebuild, runner, scratch
from projections.base import projection_registry
from projections.models import ProjectionState, Rebuild, Skip
from projections.tasks import rebuild_slice
from projections.verify import verify
from tests.conftest import start_worker, wait_for, worker_database_url
from tests.integration.api.conftest import Api, make_user
from tests.integration.projections.conftest import replay_whole_log

LEDGER = ["account_entries", "account_summary", "daily_totals", "transfers"]


def ctx() -> CommandContext:
    return CommandContext(actor="test")


def _open(n: int, deposits: int = 3) -> list:
    ids = []
    for i in range(n):
        account = handlers.account_open(account_id=uuid4(), owner=f"Rebuilt {i}", currency="EUR", ctx=ctx()).stream_id
        for _ in range(deposits):
            handlers.account_deposit(account_id=account, amount=10, ctx=ctx())
        ids.append(account)
    return ids


def _caught_up() -> bool:
    return not runner.lagging_buckets()


def test_a_rebuild_while_writes_continue_never_shows_a_partial_read_model(worker):
    accounts = _open(20)
    wait_for(_caught_up, timeout=60, what="catch-up")
    floor_rows, floor_sum = len(accounts), 20 * 30
    generation = ProjectionState.objects.get(name="account_summary").generation
    stop, seen, problems = threading.Event(), [], []

    def write() -> None:
        try:
            while not stop.is_set():
                handlers.account_deposit(account_id=accounts[len(seen) % len(accounts)], amount=1, ctx=ctx())
        finally:
            connections.close_all()

    def read() -> None:  # the accounts opened before the rebuild: all there, balances never go down
        try:
            last = floor_sum
            while not stop.is_set():
                with connection.cursor() as cur:
                    cur.execute(
                        "SELECT count(*), coalesce(sum(balance), 0) FROM ledger_account WHERE account_id = ANY(%s)",
                        [accounts],
                    )
                    rows, total = cur.fetchone()
                seen.append(rows)
                if rows < floor_rows or total < last:
                    problems.append((rows, total))
                last = max(last, total)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=write), threading.Thread(target=read)]
    for t in threads:
        t.start()
    try:
        response = Api(make_user("olga", "operator")).post("/api/projections/account_summary/rebuild")
        assert response.status_code == 202, response.content
        assert response.json()["rebuild"]["state"] == "running"
        job = Rebuild.objects.get(pk=response.json()["rebuild"]["id"])
        done = wait_for(
            lambda: Rebuild.objects.filter(pk=job.pk).exclude(state="running").first(), timeout=60, what="rebuild"
        )
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert done.state == "done", done.error
    assert not problems, f"a read saw a partial read model: {problems[:5]}"
    assert len(seen) > 10
    state = ProjectionState.objects.get(name="account_summary")
    assert state.generation == generation + 1
    wait_for(_caught_up, timeout=60, what="catch-up after the swap")
    assert verify("account_summary").clean
    overview = {p["name"]: p for p in Api(make_user("vic", "viewer")).get("/api/projections").json()}
    assert overview["account_summary"]["generation"] == generation + 1
    assert overview["account_summary"]["last_rebuild"]["state"] == "done"


def test_a_viewer_cannot_start_a_rebuild_and_an_unknown_projection_is_404(transactional_db):
    viewer = Api(make_user("vic", "viewer"))
    operator = Api(make_user("olga", "operator"))
    assert viewer.post("/api/projections/account_summary/rebuild").status_code == 403
    response = operator.post("/api/projections/nope/rebuild")
    assert response.status_code == 404 and response.json()["error"] == "not_found"
    assert not Rebuild.objects.exists()


def test_a_rebuild_resumed_from_the_middle_mixes_rows_read_back_with_new_ones(transactional_db, monkeypatch):
    """The slice after a lost connection or a killed worker starts without the memo: rows come back
    from the scratch tables (a numeric balance reads as Decimal) beside rows made from events (int)."""
    frozen = _open(1, deposits=1)[0]
    handlers.account_freeze(account_id=frozen, ctx=ctx())  # changes the status only: its balance stays as read
    fresh = _open(1, deposits=0)[0]
    job = rebuild.start("account_summary", reason="test", run_in_worker=False)
    monkeypatch.setattr(scratch, "BATCH_SIZE", 2)  # one slice of one batch: rows in the scratch tables, no more
    assert rebuild.run_slice(job.pk, seconds=0) == "more"
    rebuild._carried.clear()  # another worker, or a slice after a lost connection, has no memo
    # The log holds every earlier test's events too: the rest in larger batches, as many slices as it takes.
    monkeypatch.setattr(scratch, "BATCH_SIZE", 500)
    outcomes = [rebuild.run_slice(job.pk, seconds=30)]
    while outcomes[-1] == "more" and len(outcomes) < 40:
        outcomes.append(rebuild.run_slice(job.pk, seconds=30))
    assert outcomes[-1] == "done", Rebuild.objects.get(pk=job.pk).error
    rows = {a.account_id: a for a in AccountSummary.objects.filter(account_id__in=[frozen, fresh])}
    assert (rows[frozen].balance, rows[frozen].status) == (10, "frozen")
    assert (rows[fresh].balance, rows[fresh].status) == (0, "open")


@pytest.mark.parametrize("lost", [psycopg.OperationalError, psycopg.InterfaceError])
def test_a_batch_that_loses_the_event_stores_connection_is_tried_again(transactional_db, monkeypatch, lost):
    _open(1, deposits=1)
    job = rebuild.start("account_summary", reason="test", run_in_worker=False)

    def connection_lost(*args: object, **kwargs: object) -> None:  # as the store's own psycopg cursor raises it
        raise lost("consuming input failed: server closed the connection unexpectedly")

    monkeypatch.setattr(scratch, "replay_batch", connection_lost)
    assert rebuild.run_slice(job.pk, seconds=0) == "retry"
    assert Rebuild.objects.get(pk=job.pk).state == "running"
    rebuild.cancel("account_summary")


def test_a_slice_that_starts_while_the_database_is_away_is_tried_again(transactional_db, monkeypatch):
    _open(1, deposits=1)
    job = rebuild.start("account_summary", reason="test", run_in_worker=False)

    class Away:
        def filter(self, *args: object, **kwargs: object) -> None:
            raise OperationalError("connection failed: the database system is shutting down")

    with monkeypatch.context() as patched:
        patched.setattr(Rebuild, "objects", Away())  # the slice's very first query
        assert rebuild.run_slice(job.pk, seconds=0) == "retry"  # the task queues it again in 2 s
    assert rebuild.run_slice(job.pk, seconds=30) == "done"


def test_a_rebuild_asked_for_while_the_broker_is_down_is_recorded_and_resumed_by_beat(transactional_db, monkeypatch):
    def broker_down(*args: object, **kwargs: object) -> None:  # what kombu raises when Redis refuses
        raise kombu.exceptions.OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(celery_app, "send_task", broker_down)
    response = Api(make_user("olga", "operator")).post("/api/projections/account_summary/rebuild")
    assert response.status_code == 202, response.json()
    job = Rebuild.objects.get(projection="account_summary")
    assert job.state == "running" and job.ticket == 1  # recorded: its first slice is what was lost
    Rebuild.objects.filter(pk=job.pk).update(updated_at=job.updated_at.replace(year=2000))
    assert rebuild.resume_stalled(enqueue_slice=False) == [job.pk]  # beat's tick hands it on
    rebuild.cancel("account_summary")


def _lock_waiters(name: str) -> list[int]:
    with connection.cursor() as cur:
        cur.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s AND wait_event_type = 'Lock'", [name])
        return [r[0] for r in cur.fetchall()]


def test_a_worker_killed_during_a_rebuild_is_resumed_where_it_stopped(worker, monkeypatch):
    accounts = _open(30, deposits=4)
    wait_for(_caught_up, timeout=60, what="catch-up")
    job = rebuild.start("account_entries", reason="test", run_in_worker=False)
    monkeypatch.setattr(scratch, "BATCH_SIZE", 50)
    assert rebuild.run_slice(job.pk, seconds=0) == "more"  # one small batch here
    job.refresh_from_db()
    first = job.done
    assert first > 0
    session_worker = f"test-{os.getpid()}@{os.uname().nodename}"
    for queue in settings.QUEUES.values():
        celery_app.control.cancel_consumer(queue, destination=[session_worker], reply=True)
    doomed_name = f"doomed-{os.getpid()}"
    doomed = start_worker(doomed_name)
    try:
        with psycopg.connect(worker_database_url()) as blocker:
            blocker.execute(f"LOCK TABLE {job.schema}.ledger_entry IN SHARE MODE")
            rebuild_slice.delay(job.pk, job.ticket)
            wait_for(lambda: _lock_waiters(doomed_name), what="the doomed worker to block mid-rebuild")
            doomed.send_signal(signal.SIGKILL)
            doomed.wait(timeout=10)
            _kill_orphans(doomed.pid, doomed_name)
            blocker.rollback()
        job.refresh_from_db()
        assert job.state == "running" and job.done == first  # the killed batch left nothing behind
    finally:
        if doomed.poll() is None:
            doomed.kill()
        for queue in settings.QUEUES.values():
            celery_app.control.add_consumer(queue, destination=[session_worker], reply=True)
    # Its task is lost with the worker (a broker redelivers only after a long visibility timeout):
    # beat resumes a rebuild that has not moved for a while. Make it look that old.
    Rebuild.objects.filter(pk=job.pk).update(updated_at=job.updated_at.replace(year=2000))
    done = wait_for(
        lambda: Rebuild.objects.filter(pk=job.pk).exclude(state="running").first(), timeout=60, what="resumption"
    )
    assert done.state == "done", done.error
    assert done.ticket == job.ticket + 1  # resumed by beat, with a new ticket
    with connection.cursor() as cur:  # every event of the projection's types applied exactly once
        cur.execute(
            "SELECT count(*) FROM (SELECT event_type, global_position FROM eventstore_event UNION ALL "
            "SELECT event_type, global_position FROM eventstore_archived_event) AS e "
            "WHERE event_type = ANY(%s) AND global_position <= %s",  # archived streams are rebuilt too
            [projection_registry.get("account_entries").event_types, done.position],
        )
        assert done.done == cur.fetchone()[0]
    wait_for(_caught_up, timeout=60, what="catch-up after the swap")
    assert Entry.objects.filter(account_id__in=accounts).count() == 30 * 4
    assert verify("account_entries").clean


def _kill_orphans(parent_pid: int, name: str) -> None:
    import psutil

    for p in psutil.process_iter(["ppid", "cmdline"]):
        if p.info["ppid"] in (parent_pid, 1) and name in " ".join(p.info["cmdline"] or []):
            os.kill(p.pid, signal.SIGKILL)


def test_a_changed_version_is_rebuilt_on_detection(worker):
    _open(3)
    wait_for(_caught_up, timeout=60, what="catch-up")
    ProjectionState.objects.filter(name="transfers").update(version=0)  # as if the code moved on
    assert rebuild.changed() == ["transfers"]
    [job] = rebuild.rebuild_changed()
    done = wait_for(lambda: Rebuild.objects.filter(pk=job.pk).exclude(state="running").first(), timeout=60)
    assert done.state == "done", done.error
    assert ProjectionState.objects.get(name="transfers").version == projection_registry.get("transfers").version
    assert rebuild.changed() == []


def test_a_rebuild_honours_recorded_skips(worker):
    [account] = _open(1, deposits=2)
    wait_for(_caught_up, timeout=60, what="catch-up")
    deposit = EventStore().read_stream(account)[1]
    Skip.objects.create(
        projection="account_summary", event_id=deposit.event_id, position=deposit.position, bucket=deposit.bucket
    )
    job = rebuild.start("account_summary", reason="test", run_in_worker=False)
    while (outcome := rebuild.run_slice(job.pk)) == "more":
        pass
    assert outcome == "done"
    row = AccountSummary.objects.get(account_id=account)
    assert int(row.balance) == 10  # the skipped deposit of 10 is left out


def test_verify_projections_is_clean_after_a_workload_and_names_a_planted_difference(worker, capsys):
    replay_whole_log()  # verify replays the whole log: the live read models must hold it too
    accounts = _open(10)
    wait_for(_caught_up, timeout=60, what="catch-up")
    call_command("verify_projections")
    assert "account_summary: ok" in capsys.readouterr().out
    AccountSummary.objects.filter(account_id=accounts[0]).update(balance=999)
    Entry.objects.filter(account_id=accounts[1]).order_by("-version").first().delete()
    with pytest.raises(CommandError, match="account_entries, account_summary"):
        call_command("verify_projections")
    out = capsys.readouterr().out
    assert "ledger_account: 1 row(s) only in the live table, 1 only in the replay" in out
    assert "ledger_entry: 0 row(s) only in the live table, 1 only in the replay" in out


def test_rebuild_projection_command_rebuilds_with_a_progress_bar(worker, capsys):
    _open(5)
    wait_for(_caught_up, timeout=60, what="catch-up")
    call_command("rebuild_projection", "daily_totals")
    out = capsys.readouterr().out
    assert "daily_totals [" in out and "generation swapped in" in out
    assert verify("daily_totals").clean
    with pytest.raises(CommandError, match="unknown projection"):
        call_command("rebuild_projection", "nope")
