"""A tombstoned stream through the API: commands get 409 `stream_tombstoned`, reads of the
stream 410 `stream_gone`; `manage.py tombstone_stream` makes one; other streams are untouched."""

from io import StringIO
from uuid import uuid4

import pytest
from django.core.management import CommandError, call_command

from eventstore.store import EventStore
from tests.integration.api.conftest import open_account


def tombstone(stream_id: str, reason: str = "") -> str:
    out = StringIO()
    call_command("tombstone_stream", stream_id, reason=reason, stdout=out)
    return out.getvalue()


def test_commands_on_a_tombstoned_account_are_409_and_append_nothing(operator):
    account = open_account(operator)
    assert operator.post(f"/api/accounts/{account}/deposits", {"amount": 500}).status_code == 200
    assert "is now tombstoned" in tombstone(account, reason="closed for good")
    for path, body in (("deposits", {"amount": 1}), ("withdrawals", {"amount": 1}), ("freeze", {"reason": "x"})):
        response = operator.post(f"/api/accounts/{account}/{path}", body)
        assert response.status_code == 409, path
        assert response.json() == {
            "error": "stream_tombstoned",
            "detail": "this stream is tombstoned: it accepts no more events",
        }
    assert EventStore().stream_version(account) == 2


def test_reads_of_a_tombstoned_stream_are_410_and_say_since_when(viewer, operator):
    account = open_account(operator)
    tombstone(account)
    since = EventStore().tombstone_of(account).tombstoned_at.isoformat()
    for path in (f"/api/streams/{account}/events", f"/api/aggregates/account/{account}/state"):
        response = viewer.get(path)
        assert response.status_code == 410, path
        assert response.json() == {
            "error": "stream_gone",
            "detail": f"stream {account} was tombstoned",
            "tombstoned_at": since,
        }


def test_other_accounts_keep_working(viewer, operator):
    dead, live = open_account(operator), open_account(operator, owner="Bo")
    tombstone(dead)
    assert operator.post(f"/api/accounts/{live}/deposits", {"amount": 5}).json()["version"] == 2
    assert viewer.get(f"/api/streams/{live}/events").status_code == 200
    assert viewer.get(f"/api/aggregates/account/{live}/state").json()["state"]["balance"] == 5


def test_the_command_says_when_a_stream_was_already_tombstoned(transactional_db):
    stream = str(uuid4())
    tombstone(stream, reason="first")
    assert "was already tombstoned" in tombstone(stream, reason="second")
    assert EventStore().tombstone_of(stream).reason == "first"


@pytest.mark.parametrize("bad", ["not-a-uuid", "123"])
def test_the_command_refuses_what_is_not_a_stream_id(transactional_db, bad):
    with pytest.raises(CommandError, match="not a stream id"):
        call_command("tombstone_stream", bad)
