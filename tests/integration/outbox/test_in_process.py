"""The publisher run in this process over a few thousand events, on each broker in turn: every
event published once, through one connection per process that follows the settings (broker and
exchange) it was made for. Prints the rate (docs/integration.md quotes it)."""

from __future__ import annotations

import time
from uuid import uuid4

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
