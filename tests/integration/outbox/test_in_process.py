"""The publisher run in this process over a few thousand events, on each broker in turn: every
event published once, through one connection per process that follows the settings (broker and
exchange) it was made for. Prints the rate (docs/integration.md quotes it)."""

from __future__ import annotations

import time
from uuid import uuid4

import pytest
from kombu import Queue

from app.integration import transport
from app.ledger.domain import events as e
from eventstore.records import NO_STREAM
from eventstore.store import EventStore
from projections import processes, status

ACCOUNTS, DEPOSITS = 50, 40


def test_the_publisher_publishes_every_event_once_on_either_broker(integration_broker, settings, transactional_db):
    settings.EVENTFOLD_EXCHANGE = f"test.{uuid4().hex}"
    queue = Queue(f"test.outbox.{uuid4().hex}", transport.exchange(), routing_key="ledger.#", auto_delete=False)
    store = EventStore()
    status.start_at_head()
    accounts = [uuid4() for _ in range(ACCOUNTS)]
    for account in accounts:
        store.append(
            account, "account", [e.AccountOpened(owner="Ina Inproc", currency="EUR")], expected_version=NO_STREAM
        )
    for i in range(DEPOSITS):
        for account in accounts:
            store.append(account, "account", [e.FundsDeposited(amount=i + 1)])
    with transport.connection() as conn:
        bound = queue(conn.default_channel)
        bound.declare()
        try:
            started = time.perf_counter()
            for bucket in range(64):
                while processes.run("integration_publisher", bucket) == "more":
                    pass
            took = time.perf_counter() - started
            got = 0
            while bound.get(no_ack=True) is not None:
                got += 1
        finally:
            bound.delete()
            transport.exchange()(conn.default_channel).delete()
    events = ACCOUNTS * (DEPOSITS + 1)
    print(f"\n{integration_broker.split(':')[0]}: {events} events published in {took:.2f} s, {events / took:.0f}/s")
    assert got == events


def test_a_broker_away_defers_the_bucket_unparked_and_said_once_then_it_publishes(
    integration_broker, settings, transactional_db, caplog, monkeypatch
):
    """The Deferred path in this process: the run stops before the event with the checkpoint
    where it was, the bucket not parked, one warning for the outage; with the broker back (after
    the cool-off) the same event is published."""
    from app.integration.publisher import _publishing
    from projections.models import BucketCheckpoint

    settings.EVENTFOLD_EXCHANGE = f"test.{uuid4().hex}"
    queue = Queue(f"test.outbox.{uuid4().hex}", transport.exchange(), routing_key="ledger.#", auto_delete=False)
    status.start_at_head()
    account = uuid4()
    EventStore().append(
        account, "account", [e.AccountOpened(owner="Ola Outage", currency="EUR")], expected_version=NO_STREAM
    )
    bucket = EventStore().read_stream(account)[0].bucket
    row = {"projection": "integration_publisher", "bucket": bucket}
    before = BucketCheckpoint.objects.get(**row).position

    monkeypatch.setattr(_publishing, "cool_off_s", 0.2)
    settings.INTEGRATION_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    with caplog.at_level("INFO", logger="app.integration.transport"):
        assert processes.run("integration_publisher", bucket) == "deferred"
        assert processes.run("integration_publisher", bucket) == "deferred"  # within the cool-off: not even tried
        time.sleep(0.3)
        assert processes.run("integration_publisher", bucket) == "deferred"  # tried again: still away
        checkpoint = BucketCheckpoint.objects.get(**row)
        assert (checkpoint.position, checkpoint.failed) == (before, False)
        said = [r.getMessage() for r in caplog.records if "publishing waits" in r.getMessage()]
        assert len(said) == 1 and "127.0.0.1:1/0 unavailable" in said[0]

        settings.INTEGRATION_BROKER_URL = integration_broker
        with transport.connection() as conn:
            bound = queue(conn.default_channel)
            bound.declare()
            try:
                time.sleep(0.3)
                assert processes.run("integration_publisher", bucket) == "drained"
                message = bound.get(no_ack=True)
                assert message is not None and message.delivery_info["routing_key"] == "ledger.account_opened.v1"
            finally:
                bound.delete()
                transport.exchange()(conn.default_channel).delete()
        assert any("is back: publishing resumes" in r.getMessage() for r in caplog.records)
    assert BucketCheckpoint.objects.get(**row).position > before


def test_a_crash_before_the_checkpoint_moves_publishes_the_batch_again_with_the_same_ids(
    integration_broker, settings, transactional_db, monkeypatch
):
    """At least once: the batch went to the broker, then the checkpoint's move failed (the worker
    died there); the next run sends the same messages again, with the same message ids and bodies,
    in the same order, for consumers to dedupe by."""
    settings.EVENTFOLD_EXCHANGE = f"test.{uuid4().hex}"
    queue = Queue(f"test.outbox.{uuid4().hex}", transport.exchange(), routing_key="ledger.#", auto_delete=False)
    status.start_at_head()
    account = uuid4()
    store = EventStore()
    store.append(account, "account", [e.AccountOpened(owner="Dora Dup", currency="EUR")], expected_version=NO_STREAM)
    store.append(account, "account", [e.FundsDeposited(amount=5), e.FundsDeposited(amount=7)])
    bucket = store.read_stream(account)[0].bucket

    real_stop, crashes = processes._stop, []

    def crash_once(*args, **kwargs):
        if not crashes:
            crashes.append(1)
            raise RuntimeError("the worker died before the checkpoint moved")
        return real_stop(*args, **kwargs)

    monkeypatch.setattr(processes, "_stop", crash_once)
    with transport.connection() as conn:
        bound = queue(conn.default_channel)
        bound.declare()
        try:
            with pytest.raises(RuntimeError, match="worker died"):
                processes.run("integration_publisher", bucket)
            assert processes.run("integration_publisher", bucket) == "drained"
            got = []
            while (message := bound.get(no_ack=True)) is not None:
                got.append((message.properties["message_id"], message.body))
        finally:
            bound.delete()
            transport.exchange()(conn.default_channel).delete()
    ids = [str(event.event_id) for event in store.read_stream(account)]
    first, second = got[: len(got) // 2], got[len(got) // 2 :]
    assert len(got) == 2 * len(ids) and first == second  # the same batch twice, in the log's order
    assert [message_id for message_id, _ in first] == ids


def test_rabbitmq_confirms_every_message_and_a_refusal_defers_the_batch(amqp_url, settings, transactional_db):
    """Publisher confirms: a queue that refuses what exceeds its length (`reject-publish`) makes
    the broker nack those messages, and the batch is not taken as published; only confirms can
    tell (without them the broker drops the messages silently)."""
    from app.integration.publisher import _publishing

    settings.INTEGRATION_BROKER_URL = amqp_url
    settings.EVENTFOLD_EXCHANGE = f"test.{uuid4().hex}"
    full = Queue(
        f"test.outbox.{uuid4().hex}",
        transport.exchange(),
        routing_key="ledger.#",
        auto_delete=False,
        queue_arguments={"x-max-length": 1, "x-overflow": "reject-publish"},
    )
    sent = [transport.Outgoing(b"{}", "ledger.test.v1", str(uuid4()), {}) for _ in range(3)]
    with transport.connection() as conn:
        bound = full(conn.default_channel)
        bound.declare()
        try:
            with pytest.raises(transport.BrokerUnavailable, match="refused"):
                _publishing.publish_all(sent)
            _publishing._down_until = 0.0  # past the cool-off at once
            bound.purge()
            _publishing.publish_all(sent[:1])  # one fits: confirmed, and in the queue when the call returns
            assert bound.get(no_ack=True).properties["message_id"] == sent[0].message_id
        finally:
            bound.delete()
            transport.exchange()(conn.default_channel).delete()
