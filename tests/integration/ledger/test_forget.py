"""Forgetting an owner through the REST API and `manage.py forget_subject`: who may, what it
appends and destroys, forgetting twice, and replaying the forget ledger after a restored backup
brought keys back. (The name searched for in a whole database dump and the logs:
test_forget_everywhere.py.)"""

from __future__ import annotations

import io
import re
from uuid import UUID, uuid4

import pytest
from django.core.cache import cache
from django.core.management import CommandError, call_command

from app.core.models import ProcessedCommand
from app.ledger import commands, forgetting
from app.ledger.domain.account import Account
from eventstore.personal_data import FORGOTTEN, SubjectKeys
from eventstore.repository import Repository
from eventstore.store import EventStore
from tests.conftest import owner_cursor
from tests.integration.api.conftest import open_account
from tests.integration.api.test_read_models import catch_up_all


def forget(api, account: str, **headers: str):
    return api.post(f"/api/accounts/{account}/forget", **headers)


def types(account: str | UUID) -> list[str]:
    return [e.type.removeprefix("ledger.") for e in EventStore().read_stream(UUID(str(account)))]


def key_of(account: str | UUID) -> bytes | None:
    return SubjectKeys().get([UUID(str(account))]).get(UUID(str(account)))


def test_an_admin_forgets_an_owner_once_and_again_harmlessly(admin, operator):
    account = open_account(operator, "Orla Once")
    operator.post(f"/api/accounts/{account}/deposits", {"amount": 250})
    first = forget(admin, account)
    assert first.status_code == 200, first.content
    body = first.json()
    assert body == {"account_id": account, "version": 3, "position": body["position"], "already_forgotten": False}
    assert first["ETag"] == '"3"'
    assert types(account) == ["AccountOpened", "FundsDeposited", "AccountOwnerForgotten"]
    [*_, audit] = EventStore().read_stream(UUID(account))
    assert audit.metadata["actor"] == "ada" and audit.metadata["command"] == "ForgetOwner"
    assert key_of(account) is None
    again = forget(admin, account)
    assert again.status_code == 200 and again.json() == {**body, "already_forgotten": True}
    assert len(types(account)) == 3


def test_everything_else_about_the_account_keeps_working(admin, operator):
    account = open_account(operator, "Will Workon")
    forget(admin, account)
    deposit = operator.post(f"/api/accounts/{account}/deposits", {"amount": 500})
    assert deposit.status_code == 200, deposit.content
    assert operator.post(f"/api/accounts/{account}/withdrawals", {"amount": 200}).status_code == 200
    state = operator.get(f"/api/aggregates/account/{account}/state").json()["state"]
    assert (state["owner"], state["balance"], state["forgotten"]) == (FORGOTTEN, 300, True)
    first = operator.get(f"/api/aggregates/account/{account}/state", version=1).json()["state"]
    assert first["owner"] == FORGOTTEN  # the time machine cannot open the sealed name either
    assert EventStore().read_stream(UUID(account))[0].data["owner"] == FORGOTTEN


def test_who_may_forget_and_what_bad_ids_get(admin, operator, viewer):
    account = open_account(operator, "Rhea Refused")
    for api, status in ((viewer, 403), (operator, 403)):
        response = forget(api, account)
        assert (response.status_code, response.json()["error"]) == (status, "forbidden")
    unknown = forget(admin, str(uuid4()))
    assert (unknown.status_code, unknown.json()["error"]) == (404, "not_found")
    bad = forget(admin, "not-an-id")
    assert bad.status_code in (404, 422) and "error" in bad.json()
    assert types(account) == ["AccountOpened"] and key_of(account) is not None


def test_kept_idempotency_results_about_the_account_go_but_the_forget_request_s_own_stays(admin, operator):
    account = operator.post(
        "/api/accounts", {"owner": "Kim Keyed", "currency": "EUR"}, **{"Idempotency-Key": "open-for-kim-keyed"}
    ).json()["account_id"]
    other = open_account(operator, "Otto Other")
    operator.post(f"/api/accounts/{account}/deposits", {"amount": 9}, **{"Idempotency-Key": "kim-deposit"})
    body = {"from_account": account, "to_account": other, "amount": 1}
    operator.post("/api/transfers", body, **{"Idempotency-Key": "kim-transfer"})
    operator.post(f"/api/accounts/{other}/deposits", {"amount": 9}, **{"Idempotency-Key": "otto-deposit"})
    catch_up_all()  # the transfer in the read model, which says whose it is
    keys = set(ProcessedCommand.objects.values_list("key", flat=True))
    assert keys >= {"open-for-kim-keyed", "kim-deposit", "kim-transfer", "otto-deposit"}
    assert forget(admin, account, **{"Idempotency-Key": "forget-1"}).status_code == 200
    left = set(ProcessedCommand.objects.values_list("key", flat=True))
    assert left == keys - {"open-for-kim-keyed", "kim-deposit", "kim-transfer"} | {"forget-1"}
    assert forget(admin, account, **{"Idempotency-Key": "forget-1"}).json()["already_forgotten"] is False  # kept


def test_every_process_drops_its_cached_states(operator, admin):
    account = UUID(open_account(operator, "Cass Cached"))
    operator.post(f"/api/accounts/{account}/deposits", {"amount": 1})
    assert commands.STATES.get("account", account)[1].owner == "Cass Cached"
    before = cache.get(commands.FORGET_GENERATION_KEY)
    forget(admin, str(account))
    assert commands.STATES.get("account", account) is None  # this process: at once
    named = Account.initial_state().model_copy(update={"owner": "Cass Cached"})

    def another_process_checks(seen: object) -> bool:
        """A process whose states were kept under generation `seen` uses them: are they kept?"""
        commands.STATES.put("account", account, 1, named)
        commands._generation.update(seen=seen, checked_at=float("-inf"))
        commands.repository(Account)
        return commands.STATES.get("account", account) is not None

    assert not another_process_checks(before)  # kept before the forgetting: dropped
    assert another_process_checks(cache.get(commands.FORGET_GENERATION_KEY))  # since: kept
    commands.STATES.clear()


# -- manage.py forget_subject -------------------------------------------------------------------
def run(*args: str) -> str:
    out = io.StringIO()
    call_command("forget_subject", *args, stdout=out)
    return out.getvalue()


def test_the_command_forgets_lists_and_refuses_what_is_not_an_account(operator):
    account = open_account(operator, "Cole Command")
    assert "is forgotten" in run(account)
    assert "was forgotten before" in run(account)
    assert account in run("--list").split()
    assert types(account)[-1] == "AccountOwnerForgotten" and key_of(account) is None
    with pytest.raises(CommandError, match="no account"):
        run(str(uuid4()))
    with pytest.raises(CommandError, match="not an account id"):
        run("Cole Command")
    with pytest.raises(CommandError, match="give account ids, or --list, or --replay"):
        run()


def restore_key(account: str, wrapped: bytes) -> None:
    """What restoring a backup taken before the forgetting does to the key table (the guard
    refuses it to every role, so the owner switches it off for the moment, as a restore does)."""
    with owner_cursor() as cur:
        cur.execute("ALTER TABLE eventstore_subject_key DISABLE TRIGGER eventstore_subject_key_only_forget")
        try:
            cur.execute(
                "UPDATE eventstore_subject_key SET wrapped_key = %s, forgotten_at = NULL WHERE subject_id = %s",
                [wrapped, account],
            )
        finally:
            cur.execute("ALTER TABLE eventstore_subject_key ENABLE ALWAYS TRIGGER eventstore_subject_key_only_forget")


def wrapped_key(account: str) -> bytes:
    with owner_cursor() as cur:
        cur.execute("SELECT wrapped_key FROM eventstore_subject_key WHERE subject_id = %s", [account])
        return bytes(cur.fetchone()[0])


def test_replay_destroys_keys_a_restored_backup_brought_back(operator, tmp_path):
    forgotten, unlogged = open_account(operator, "Rita Restored"), open_account(operator, "Una Logged")
    unknown = uuid4()
    saved = wrapped_key(forgotten)
    run(forgotten)
    restore_key(forgotten, saved)  # the backup's key is back: the name reads again
    assert EventStore().read_stream(UUID(forgotten))[0].data["owner"] == "Rita Restored"
    ledger = tmp_path / "forgotten.txt"  # kept outside the backups: ids the restored log may not know
    ledger.write_text(f"# forgotten owners\n{unlogged}\n{unknown}\n")
    out = run("--replay", "--from", str(ledger))
    # (the test log keeps other tests' forgotten owners: their keys are gone already)
    assert re.search(r"replayed \d+ forgotten owners: 2 keys destroyed, 1 audit events appended, 1 not in this", out)
    for account in (forgotten, unlogged):
        assert key_of(account) is None and EventStore().read_stream(UUID(account))[0].data["owner"] == FORGOTTEN
    assert types(unlogged)[-1] == "AccountOwnerForgotten" and types(forgotten).count("AccountOwnerForgotten") == 1
    assert Repository(Account, EventStore()).load(UUID(forgotten)).state.owner == FORGOTTEN
    assert ": 0 keys destroyed, 0 audit events appended, 0 not in this store" in run("--replay")
    assert set(forgetting.forgotten_subjects()) >= {UUID(forgotten), UUID(unlogged)}


# -- the append stays the first write of the forget transaction ---------------------------------
WRITE = re.compile(r"\b(INSERT|UPDATE|DELETE|MERGE|TRUNCATE|COPY)\b", re.IGNORECASE)
LOCKING_READ = re.compile(r"\bFOR\s+(NO\s+KEY\s+)?(UPDATE|SHARE)\b", re.IGNORECASE)


def is_write(sql: str) -> bool:
    return WRITE.search(LOCKING_READ.sub("", sql)) is not None


@pytest.fixture
def statements(monkeypatch) -> list[tuple[bool, str]]:
    """Every statement sent on this process's database connections while the test runs, with
    whether it ran inside a transaction (`atomic`): through psycopg cursors (Django's own and
    the store's raw ones, which Django's query capture does not see) and the store's prepared
    appends straight through libpq (`libpq.exec_prepared`, which no cursor sees)."""
    import psycopg
    from django.db import connection

    from eventstore import libpq

    seen: list[tuple[bool, str]] = []

    def text(query: object) -> str:
        if isinstance(query, bytes):
            return query.decode()
        return query if isinstance(query, str) else query.as_string(None)  # a psycopg.sql Composable

    def record(name: str):
        original = getattr(psycopg.Cursor, name)

        def wrapper(self, query, *args, **kwargs):
            seen.append((connection.in_atomic_block, text(query)))
            return original(self, query, *args, **kwargs)

        monkeypatch.setattr(psycopg.Cursor, name, wrapper)

    for name in ("execute", "executemany", "copy"):
        record(name)
    exec_prepared = libpq.exec_prepared

    def prepared(conn, statement, values):
        seen.append((connection.in_atomic_block, statement.text.decode()))
        return exec_prepared(conn, statement, values)

    monkeypatch.setattr(libpq, "exec_prepared", prepared)
    return seen


def test_the_append_is_the_first_write_of_the_forget_transaction(operator, statements):
    account = open_account(operator, "Fay First")
    operator.post(f"/api/accounts/{account}/deposits", {"amount": 70}, **{"Idempotency-Key": f"fay-{account}"})
    statements.clear()
    assert "is forgotten" in run(account)
    writes = [sql for atomic, sql in statements if is_write(sql)]
    assert all(atomic for atomic, sql in statements if is_write(sql)), "every write inside the one transaction"
    assert writes[0].startswith("INSERT INTO eventstore_event "), writes
    # and the writes that follow it are there, seen by this capture (so a misplaced one would be too)
    assert any("UPDATE eventstore_subject_key" in sql for sql in writes[1:]), writes
    assert any(sql.lstrip().upper().startswith("DELETE") for sql in writes[1:]), writes
    assert types(account)[-1] == "AccountOwnerForgotten" and key_of(account) is None
