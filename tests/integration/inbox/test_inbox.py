"""The inbox against the real broker (Redis and RabbitMQ), with `manage.py consume_inbox` as a real
process on the test database: the same payment delivered three times deposits once; poison
messages land in the console's dead-letter view; a replay after the fix deposits, once; a discard
is recorded with who and when; viewers may look but not act; SIGTERM stops the consumer."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from django.conf import settings
from django.urls import reverse
from kombu import Producer

from app.core import metrics
from app.integration import consumer, transport
from app.integration.inbox import command_id
from app.integration.models import DeadLetter, InboxMessage
from app.ledger import handlers
from app.ledger.commands import CommandContext
from app.ledger.inbound import PAYMENT_RECEIVED
from eventstore.store import EventStore
from tests.conftest import wait_for, worker_database_url
from tests.integration.console.clients import console_client

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def broker(integration_broker, settings) -> Iterator[str]:
    """The broker with an exchange and an inbox queue of this test's own (declared and bound
    before anything is published), deleted afterwards."""
    settings.EVENTFOLD_EXCHANGE = f"test.{uuid4().hex}"
    settings.EVENTFOLD_INBOX_QUEUE = f"test.inbox.{uuid4().hex}"
    with transport.connection() as conn:
        queue = consumer.queue()(conn.default_channel)
        queue.declare()
    yield integration_broker
    with transport.connection() as conn:
        channel = conn.default_channel
        consumer.queue()(channel).delete()
        transport.exchange()(channel).delete()


@pytest.fixture
def consume(broker, transactional_db, tmp_path) -> Iterator[Path]:
    """`manage.py consume_inbox` as a process of its own, on the test database and this test's
    broker, exchange and queue; its output goes to the file yielded. Stopped by SIGTERM, which it
    must obey at once and cleanly."""
    log = tmp_path / "consume_inbox.log"
    env = dict(
        os.environ,
        DATABASE_URL=worker_database_url(),
        REDIS_URL=settings.REDIS_URL,
        INTEGRATION_BROKER_URL=broker,
        EVENTFOLD_EXCHANGE=settings.EVENTFOLD_EXCHANGE,
        EVENTFOLD_INBOX_QUEUE=settings.EVENTFOLD_INBOX_QUEUE,
        INBOX_RETRY_BACKOFF_S="0.05",
        PGAPPNAME="test-consume-inbox",
    )
    env.pop("TEST_DATABASE_NAME", None)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "consume_inbox"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        yield log
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert code == 0, log.read_text()[-3000:]


def publish(
    body: Any,
    *,
    message_id: str | None,
    routing_key: str = PAYMENT_RECEIVED,
    raw: bool = False,
    correlation: str | None = None,
    **headers: Any,
) -> None:
    """A message as another service would send it: JSON bytes, a message id, the type in a header
    (`correlation`: a correlation id as the AMQP property; as a header, it is one of `headers`)."""
    data = body if raw else json.dumps(body).encode()
    properties = {"message_id": message_id} if message_id is not None else {}
    if correlation is not None:
        properties["correlation_id"] = correlation
    with transport.connection() as conn:
        Producer(conn.default_channel).publish(
            data,
            exchange=transport.exchange(),
            routing_key=routing_key,
            content_type="application/json",
            content_encoding="utf-8",
            headers={"type": routing_key, **headers},
            **properties,
        )


def open_account(account_id: UUID | None = None, currency: str = "EUR") -> UUID:
    account_id = account_id or uuid4()
    handlers.account_open(account_id=account_id, owner="Ann Example", currency=currency, ctx=CommandContext("test"))
    return account_id


def deposits(account_id: UUID) -> list[Any]:
    return [e for e in EventStore().read_stream(account_id) if e.type == "ledger.FundsDeposited"]


def balance(account_id: UUID) -> int:
    return sum(e.data["amount"] for e in deposits(account_id))


def handled(message_id: str) -> bool:
    return InboxMessage.objects.filter(pk=message_id).exists()


def test_the_same_payment_delivered_three_times_deposits_once(consume):
    account = open_account()
    other = open_account()
    message_id = f"pay-{uuid4()}"
    payment = {"account_id": str(account), "amount": 12_50, "currency": "EUR", "reference": "invoice 7"}
    correlation = str(uuid4())
    for _ in range(3):
        publish(payment, message_id=message_id, correlation=correlation)
    publish({"account_id": str(other), "amount": 1, "currency": "EUR"}, message_id=f"last-{uuid4()}")

    wait_for(lambda: deposits(other), timeout=30, what="the last message (after the three copies) to be handled")
    [deposit] = deposits(account)
    assert balance(account) == 12_50
    assert deposit.event_id == CommandContext("inbox", command_id=command_id(message_id)).event_ids(1)[0]
    assert deposit.data["channel"] == "inbox" and deposit.data["reference"] == "invoice 7"
    assert deposit.metadata["actor"] == "inbox:payments"
    assert deposit.metadata["correlation_id"] == correlation
    assert InboxMessage.objects.filter(message_id=message_id).count() == 1
    assert not DeadLetter.objects.exists()
    said = wait_for(lambda: consume.read_text().count("inbound message duplicate") == 2 and consume.read_text())
    assert message_id in said  # every line names the message it is about
    assert "Ann Example" not in said


def test_a_poison_message_is_parked_shown_and_replayed_after_the_fix(consume):
    missing = uuid4()  # the payment arrives before the account is opened
    wrong_currency = open_account(currency="USD")
    ids = {name: f"{name}-{uuid4()}" for name in ("early", "bad_json", "currency", "unknown")}
    correlation = str(uuid4())
    publish(
        {"account_id": str(missing), "amount": 40_00, "currency": "EUR"},
        message_id=ids["early"],
        correlation_id=correlation,
    )
    publish(b'{"account_id": ', raw=True, message_id=ids["bad_json"])
    publish({"account_id": str(wrong_currency), "amount": 5, "currency": "EUR"}, message_id=ids["currency"])
    publish({"amount": 5}, message_id=ids["unknown"], type="payments.refund_issued.v1")
    publish({"account_id": str(missing), "amount": 1, "currency": "EUR"}, message_id=None)
    wait_for(lambda: DeadLetter.objects.count() == 5, timeout=30, what="five dead letters")

    reasons = dict(DeadLetter.objects.values_list("message_id", "reason"))
    assert reasons == {
        ids["early"]: "not_found",
        ids["bad_json"]: "invalid_json",
        ids["currency"]: "currency_mismatch",
        ids["unknown"]: "unknown_type",
        None: "missing_message_id",
    }
    assert not deposits(wrong_currency)
    early = DeadLetter.objects.get(message_id=ids["early"])
    assert (early.status, early.attempts, early.routing_key) == ("parked", 1, PAYMENT_RECEIVED)

    operator, viewer = console_client("olga", "operator"), console_client("vic", "viewer")
    page = viewer.get(reverse("console:dead_letters")).content.decode()
    for reason in ("not_found", "invalid_json", "currency_mismatch", "unknown_type", "missing_message_id"):
        assert reason in page
    shown = viewer.get(reverse("console:dead_letter", args=[early.pk])).content.decode()
    assert str(missing) in shown and "Replay" not in shown  # a viewer sees no controls
    assert 'id="form-replay"' in operator.get(reverse("console:dead_letter", args=[early.pk])).content.decode()
    assert 'eventfold_inbox_dead_letters{status="parked"} 5.0' in metrics.exposition()[0].decode()

    replay = reverse("console:dead_letter_replay", args=[early.pk])
    assert viewer.post(replay).status_code == 403
    operator.post(replay)  # not fixed yet: it stays parked, tried once more
    early.refresh_from_db()
    assert (early.status, early.reason, early.attempts) == ("parked", "not_found", 2)

    open_account(missing)  # the fix: the account the payment was for is opened
    answer = operator.post(replay, follow=True)
    assert "Replayed: the message was handled." in answer.content.decode()
    early.refresh_from_db()
    assert (early.status, early.settled_by.username) == ("replayed", "olga") and early.settled_at is not None
    assert balance(missing) == 40_00 and handled(ids["early"])
    assert deposits(missing)[0].metadata["correlation_id"] == correlation  # kept with the dead letter
    operator.post(replay)  # twice: refused, nothing appended again
    assert balance(missing) == 40_00

    publish({"account_id": str(missing), "amount": 40_00, "currency": "EUR"}, message_id=ids["early"])  # redelivered
    publish({"account_id": str(wrong_currency), "amount": 7, "currency": "USD"}, message_id=f"ok-{uuid4()}")
    wait_for(lambda: deposits(wrong_currency), timeout=30, what="the message after the redelivery")
    assert balance(missing) == 40_00

    bad = DeadLetter.objects.get(message_id=ids["bad_json"])
    discard = reverse("console:dead_letter_discard", args=[bad.pk])
    assert viewer.post(discard, {"confirm": "yes"}).status_code == 403
    operator.post(discard)  # not confirmed
    bad.refresh_from_db()
    assert bad.status == "parked"
    operator.post(discard, {"confirm": "yes"})
    bad.refresh_from_db()
    assert (bad.status, bad.settled_by.username) == ("discarded", "olga") and bad.settled_at is not None
    assert bytes(bad.body) == b'{"account_id": '  # kept as it came
    listed = viewer.get(reverse("console:dead_letters") + "?status=discarded").content.decode()
    assert ids["bad_json"] in listed and ids["currency"] not in listed
    every = viewer.get(reverse("console:dead_letters") + "?status=").content.decode()
    assert all(message_id in every for message_id in ids.values())  # any status: parked, replayed, discarded
    assert viewer.get(reverse("console:dead_letter", args=[10**9])).status_code == 404


def rabbitmq(*args: str) -> list[list[str]]:
    """rabbitmqctl's answer, as rows of tab-separated columns."""
    done = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=30, check=True)
    return [line.split("\t") for line in done.stdout.splitlines() if line.strip()]


def close_consumer_connection(queue: str) -> None:
    """The broker drops the connection of the consumer of `queue` (and no other)."""
    [channel] = [pid for name, pid in rabbitmq("list_consumers", "queue_name", "channel_pid") if name == queue]
    [connection] = [conn for pid, conn in rabbitmq("list_channels", "pid", "connection") if pid == channel]
    rabbitmq("close_connection", connection, "test: the broker goes away")


@pytest.mark.parametrize("integration_broker", ["rabbitmq"], indirect=True)
def test_the_consumer_reconnects_when_the_broker_drops_it(consume):
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl is needed to drop the consumer's connection")
    account = open_account()
    publish({"account_id": str(account), "amount": 100, "currency": "EUR"}, message_id=f"a-{uuid4()}")
    wait_for(lambda: balance(account) == 100, timeout=30, what="the first payment")
    close_consumer_connection(settings.EVENTFOLD_INBOX_QUEUE)
    publish({"account_id": str(account), "amount": 200, "currency": "EUR"}, message_id=f"b-{uuid4()}")
    wait_for(lambda: balance(account) == 300, timeout=30, what="the payment sent after the connection was dropped")
    assert len(deposits(account)) == 2
