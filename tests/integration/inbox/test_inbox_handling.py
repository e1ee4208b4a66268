"""The inbox's handling in this process, on the real database (no broker: `receive` is what the
consumer calls for each message): the derived event ids when the inbox record is gone, transient
failures tried again and then parked, a handler bug fixed and its message replayed, the sweep."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from uuid import UUID, uuid4

import pytest
from django.contrib.auth import get_user_model
from django.db import OperationalError
from django.utils import timezone

from app.integration import dead_letters, inbox
from app.integration.inbox import HANDLERS, Handler, Received, receive, replay
from app.integration.metrics import MESSAGES
from app.integration.models import DeadLetter, InboxMessage
from app.ledger import handlers
from app.ledger.commands import CommandContext
from app.ledger.inbound import PAYMENT_RECEIVED, PaymentReceived, payment_received
from eventstore.store import EventStore


@pytest.fixture(autouse=True)
def quick_retries(settings, transactional_db):
    settings.INBOX_RETRY_BACKOFF_S = 0.01
    settings.INBOX_MAX_ATTEMPTS = 3


def open_account(currency: str = "EUR") -> UUID:
    account_id = uuid4()
    handlers.account_open(account_id=account_id, owner="Ann Example", currency=currency, ctx=CommandContext("test"))
    return account_id


def payment(account_id: UUID, amount: int = 500, message_id: str | None = None, **headers: object) -> Received:
    body = {"account_id": str(account_id), "amount": amount, "currency": "EUR"}
    return Received(message_id or f"m-{uuid4()}", PAYMENT_RECEIVED, headers, json.dumps(body).encode())


def balance(account_id: UUID) -> int:
    return sum(e.data["amount"] for e in EventStore().read_stream(account_id) if e.type == "ledger.FundsDeposited")


def counted(outcome: str) -> float:
    return MESSAGES.labels(PAYMENT_RECEIVED, outcome)._value.get()


def test_a_redelivery_after_its_inbox_record_was_swept_still_appends_nothing():
    account = open_account()
    message = payment(account)
    assert receive(message) == "handled"
    InboxMessage.objects.all().delete()  # as the sweep does after INBOX_RETENTION_S
    assert receive(message) == "duplicate"  # the event ids derive from the message id
    assert balance(account) == 500
    assert InboxMessage.objects.filter(pk=message.message_id).exists()  # recorded again, after the (refused) append


def test_a_transient_failure_is_tried_again_and_the_message_handled(monkeypatch):
    account = open_account()
    failures = iter([OperationalError("server closed the connection")])

    def flaky(body: PaymentReceived, delivery: inbox.Delivery) -> bool:
        for exc in failures:
            raise exc
        return payment_received(body, delivery)

    monkeypatch.setitem(HANDLERS, PAYMENT_RECEIVED, Handler(PAYMENT_RECEIVED, PaymentReceived, flaky))
    retried, handled = counted("retried"), counted("handled")
    assert receive(payment(account)) == "handled"
    assert balance(account) == 500
    assert (counted("retried"), counted("handled")) == (retried + 1, handled + 1)


def test_a_message_that_keeps_failing_is_parked_after_the_last_try_and_replayed_once_the_bug_is_fixed(monkeypatch):
    account = open_account()

    def broken(body: PaymentReceived, delivery: inbox.Delivery) -> bool:
        raise KeyError(f"a bug that quotes {body.account_id}")

    monkeypatch.setitem(HANDLERS, PAYMENT_RECEIVED, Handler(PAYMENT_RECEIVED, PaymentReceived, broken))
    message = payment(account, 700)
    assert receive(message) == "dead_lettered"
    letter = DeadLetter.objects.get(message_id=message.message_id)
    assert (letter.reason, letter.detail, letter.attempts) == ("failed_repeatedly", "builtins.KeyError", 3)
    assert not InboxMessage.objects.exists() and balance(account) == 0  # nothing half-written

    operator = get_user_model().objects.create(username="olga")
    assert replay(letter.pk, user=operator) == "failed"  # not fixed yet
    letter.refresh_from_db()
    assert (letter.status, letter.attempts) == ("parked", 4)

    monkeypatch.setitem(HANDLERS, PAYMENT_RECEIVED, Handler(PAYMENT_RECEIVED, PaymentReceived, payment_received))
    assert replay(letter.pk, user=operator) == "handled"  # the fix is deployed
    letter.refresh_from_db()
    assert (letter.status, letter.settled_by, balance(account)) == ("replayed", operator, 700)
    with pytest.raises(dead_letters.NotParked):
        replay(letter.pk, user=operator)
    assert receive(message) == "duplicate" and balance(account) == 700


def test_a_closed_account_refuses_the_payment_at_once():
    account = open_account()
    handlers.account_close(account_id=account, ctx=CommandContext("test"))
    message = payment(account)
    assert receive(message) == "dead_lettered"
    letter = DeadLetter.objects.get(message_id=message.message_id)
    assert (letter.reason, letter.attempts) == ("account_closed", 1)  # a refusal is not tried again


def test_a_message_parked_twice_is_one_dead_letter():
    message = payment(uuid4())
    receive(message)
    receive(message)
    letter = DeadLetter.objects.get()
    assert (letter.reason, letter.attempts, letter.status) == ("not_found", 2, "parked")


def test_headers_are_kept_as_postgresql_can_store_them():
    message = Received(None, "x.y", {"type": "a\x00b", "raw": b"\xff", "n": 3, "big": "x" * 5000}, b"\x00\xff")
    assert receive(message) == "dead_lettered"
    letter = DeadLetter.objects.get()
    assert letter.headers == {"type": "a\ufffdb", "raw": "\ufffd", "n": 3, "big": "x" * 1000}
    assert bytes(letter.body) == b"\x00\xff"


def test_a_stop_during_the_pause_before_another_try_gives_the_message_back(monkeypatch):
    def broken(body: PaymentReceived, delivery: inbox.Delivery) -> bool:
        raise OperationalError("gone")

    monkeypatch.setitem(HANDLERS, PAYMENT_RECEIVED, Handler(PAYMENT_RECEIVED, PaymentReceived, broken))
    stop = threading.Event()
    stop.set()
    with pytest.raises(inbox.Stopping):
        receive(payment(open_account()), stop=stop)
    assert not DeadLetter.objects.exists()


def test_the_sweep_removes_what_is_past_its_retention_and_keeps_parked_letters(settings):
    now = timezone.now()
    old_inbox, old_letter = now - timedelta(seconds=settings.INBOX_RETENTION_S + 60), now - timedelta(days=31)
    for i in range(5):
        InboxMessage.objects.create(message_id=f"old-{i}", type="t", handled_at=old_inbox)
    InboxMessage.objects.create(message_id="new", type="t", handled_at=now)

    def letter(name: str, status: str, settled_at: object) -> None:
        DeadLetter.objects.create(
            message_id=name, body=b"{}", reason="r", first_seen=old_letter, last_seen=old_letter,
            status=status, settled_at=settled_at,
        )  # fmt: skip

    letter("replayed-old", "replayed", old_letter)
    letter("discarded-old", "discarded", old_letter)
    letter("discarded-new", "discarded", now)
    letter("parked-old", "parked", None)

    assert dead_letters.sweep(batch=2, max_batches=1) == (4, True)  # two of each table, more left
    assert dead_letters.sweep(batch=2) == (3, False)
    assert list(InboxMessage.objects.values_list("pk", flat=True)) == ["new"]
    assert set(DeadLetter.objects.values_list("message_id", flat=True)) == {"discarded-new", "parked-old"}


def test_backpressure_gives_the_message_back_untried_and_never_parks_it(monkeypatch):
    from app.ledger import commands

    monkeypatch.setattr(commands.backpressure, "too_far_behind", lambda: True)
    account = open_account()
    message = payment(account)
    with pytest.raises(inbox.Busy):
        receive(message)
    assert not DeadLetter.objects.exists() and balance(account) == 0
    monkeypatch.setattr(commands.backpressure, "too_far_behind", lambda: False)
    assert receive(message) == "handled"


def test_two_consumers_handling_the_same_message_at_once_deposit_once():
    from django.db import connection

    account = open_account()
    message = payment(account, 900)
    start, outcomes = threading.Barrier(2), []

    def consumer() -> None:
        try:
            start.wait()
            outcomes.append(receive(message))
        finally:
            connection.close()

    threads = [threading.Thread(target=consumer) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(outcomes) == ["duplicate", "handled"]
    assert balance(account) == 900 and not DeadLetter.objects.exists()
