"""The outbox against the real brokers (Redis and RabbitMQ), with real Celery worker processes:
a seeded workload's integration events all reach a queue bound with `ledger.#`, each stream's in
log order, duplicates (a republish after an outage) with the same message id, headers right,
through a broker outage in the middle."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock
from uuid import UUID, uuid4

import pytest
from kombu import Consumer, Queue

from app import stack
from app.celery import app as celery_app
from app.core import metrics
from app.integration import transport
from app.integration.events import registry
from app.ledger import handlers
from app.ledger.commands import CommandContext
from eventstore.records import Checkpoint
from eventstore.store import EventStore
from projections import processes, status
from projections.models import BucketCheckpoint
from tests.conftest import start_worker, wait_for
from tests.integration.projections.conftest import _stop_consuming
from tests.support import metric_samples

PUBLISHER = "integration_publisher"
UNREACHABLE = "redis://127.0.0.1:1/0"  # nothing listens on port 1: every connect is refused at once


@dataclass(frozen=True)
class Received:
    routing_key: str
    message_id: str
    headers: dict[str, Any]
    content_type: str
    delivery_mode: int | None
    body: dict[str, Any]


@pytest.fixture
def exchange_name(settings, integration_broker: str) -> Iterator[str]:
    """An exchange of this test's own on the shared broker, deleted afterwards."""
    settings.EVENTFOLD_EXCHANGE = name = f"test.{uuid4().hex}"
    yield name
    with transport.connection() as conn:
        transport.exchange()(conn.default_channel).delete()


@pytest.fixture
def queue(exchange_name: str) -> Iterator[Queue]:
    """A consumer's durable queue bound with `ledger.#`, declared before anything is published."""
    bound = Queue(
        f"test.outbox.{uuid4().hex}", transport.exchange(), routing_key="ledger.#", durable=True, auto_delete=False
    )
    with transport.connection() as conn:
        bound(conn.default_channel).declare()
    yield bound
    with transport.connection() as conn:
        bound(conn.default_channel).delete()


def take(queue: Queue, wanted: set[str], timeout: float = 90.0) -> list[Received]:
    """Every message on the queue until each wanted message id has come (and a second more, for
    duplicates), acknowledged, in arrival order."""
    received: list[Received] = []

    def keep(body: Any, message: Any) -> None:
        properties = message.properties
        received.append(
            Received(
                message.delivery_info["routing_key"],
                properties.get("message_id"),
                dict(message.headers),
                message.content_type,
                properties.get("delivery_mode"),
                json.loads(message.body),
            )
        )
        message.ack()

    deadline = time.monotonic() + timeout
    quiet_until = None
    with transport.connection() as conn, Consumer(conn, [queue], callbacks=[keep], accept=["application/json"]):
        while quiet_until is None or time.monotonic() < quiet_until:
            with contextlib.suppress(TimeoutError):  # nothing for half a second
                conn.drain_events(timeout=0.5)
            if quiet_until is None and wanted <= {r.message_id for r in received}:
                quiet_until = time.monotonic() + 1.0
            if time.monotonic() > deadline:
                missing = wanted - {r.message_id for r in received}
                raise AssertionError(f"{len(missing)} of {len(wanted)} messages never came")
    return received


@pytest.fixture
def session_worker_idle(transactional_db) -> Iterator[None]:
    """The session's test worker (if this run started one) takes nothing while the test's own
    workers publish: its publisher would publish elsewhere. It is left idle afterwards, as the
    `worker` fixture leaves it (a test that needs it turns it on): consuming again, it would catch
    up with this test's events while the test database is flushed, and the two can deadlock."""
    name = f"test-{os.getpid()}@{os.uname().nodename}"
    if celery_app.control.ping(destination=[name], timeout=0.5):
        _stop_consuming(name)
    yield


@pytest.fixture
def workers(session_worker_idle, tmp_path: Path, exchange_name: str) -> Iterator[Callable[[str], tuple]]:
    """Starts real worker processes (with beat) publishing to `broker_url` on the test's exchange,
    every subscriber first at the log's head; stops them all at the end."""
    started: list[subprocess.Popen] = []

    def start(broker_url: str) -> tuple[subprocess.Popen, Path]:
        log = tmp_path / f"worker-{len(started)}.log"
        env = {"INTEGRATION_BROKER_URL": broker_url, "EVENTFOLD_EXCHANGE": exchange_name}
        with mock.patch.dict(os.environ, env):
            proc = start_worker(f"outbox-{uuid4().hex[:8]}", log, beat_schedule=tmp_path / f"beat-{len(started)}")
        started.append(proc)
        return proc, log

    status.start_at_head()
    yield start
    for proc in started:
        stop(proc)


def stop(proc: subprocess.Popen) -> None:
    stack.stop_processes([proc], timeout=30)  # with its embedded beat


# -- the workload -------------------------------------------------------------------------------
def ctx() -> CommandContext:
    return CommandContext(actor="test")


def open_accounts() -> list[UUID]:
    accounts = []
    for i, currency in enumerate(["EUR", "EUR", "JPY", "BHD", "EUR", "USD"]):
        opened = handlers.account_open(account_id=uuid4(), owner=f"Olga Outbox {i}", currency=currency, ctx=ctx())
        accounts.append(opened.stream_id)
        handlers.account_deposit(account_id=opened.stream_id, amount=10_000 + i, ctx=ctx())
    return accounts


def move_money(accounts: list[UUID], rounds: int) -> list[UUID]:
    """Deposits, withdrawals and transfers between the EUR accounts (some refused later by the
    process manager for want of funds); returns the transfers."""
    eur = [accounts[0], accounts[1], accounts[4]]
    transfers = []
    for n in range(rounds):
        for account in accounts:
            handlers.account_deposit(account_id=account, amount=100 + n, ctx=ctx())
            handlers.account_withdraw(account_id=account, amount=50 + n, ctx=ctx())
        source, target = eur[n % 3], eur[(n + 1) % 3]
        amount = 20 if n % 4 else 10_000_000  # every fourth one more than the source holds: it fails
        transfers.append(
            handlers.transfer_request(
                transfer_id=uuid4(), from_account=source, to_account=target, amount=amount, ctx=ctx()
            ).stream_id
        )
    return transfers


def ended(transfers: list[UUID]) -> bool:
    store = EventStore()
    outcomes = {"ledger.TransferCompleted", "ledger.TransferFailed"}
    return all(any(e.type in outcomes for e in store.read_stream(t)) for t in transfers)


def counted() -> tuple[float, float]:
    """Messages published (every type) and publishes failed, summed over this machine's processes."""
    samples = metric_samples(metrics.exposition()[0].decode())
    published = sum(v for (name, _), v in samples.items() if name == "eventfold_integration_published_total")
    return published, samples.get(("eventfold_integration_publish_failures_total", frozenset()), 0.0)


def parked() -> int:
    return BucketCheckpoint.objects.filter(projection=PUBLISHER, failed=True).count()


def expected_since(start: Checkpoint) -> dict[str, tuple[str, UUID, int]]:
    """What the log says must be published since `start`: message id -> (routing key, stream, position)."""
    store, found = EventStore(), {}
    page = store.read_all(start, limit=100_000)
    for event in page.events:
        for message in registry.translate(event, store):
            found[message.message_id] = (message.event.routing_key, event.stream_id, event.position)
    return found


@pytest.mark.slow
def test_every_integration_event_arrives_in_order_through_a_broker_outage(
    integration_broker: str, request, workers, queue: Queue, exchange_name: str
):
    """RabbitMQ: `rabbitmqctl stop_app` for a few seconds in the middle while the worker keeps
    running (the node's only restart in the suite: other test runs share it). Redis: the stack's
    own embedded Redis also carries Celery and the wake-ups, so stopping it would stop everything;
    the outage is simulated instead by a first worker whose publisher points at an address where
    nothing listens, replaced by a worker with the real address."""
    broker = request.node.callspec.params["integration_broker"]
    start, (published_before, failed_before) = EventStore().head(), counted()
    if broker == "rabbitmq":
        _, log = workers(integration_broker)
        assert f"integration exchange '{exchange_name}' declared on amqp://" in log.read_text()  # as it started
        assert "guest:guest" not in log.read_text()  # no password in the log
    else:
        first, log = workers(UNREACHABLE)
        assert "unreachable at start" in log.read_text()  # not fatal: it started all the same

    accounts = open_accounts()
    transfers = move_money(accounts, 4)
    if broker == "rabbitmq":
        wait_for(lambda: ended(transfers), timeout=60, what="the first transfers to end")
        subprocess.run(["rabbitmqctl", "stop_app"], check=True, capture_output=True, timeout=60)
    try:
        transfers += move_money(accounts, 4)  # while the broker is away
        wait_for(lambda: "publishing waits" in log.read_text(), timeout=30, what="the publisher to wait")
        wait_for(lambda: ended(transfers), timeout=60, what="the transfers to end without the broker")
        time.sleep(3)  # a tick or two of beat meanwhile: still deferred, never parked
        assert parked() == 0
        assert processes.lagging_buckets(), "the publisher is behind while the broker is away"
    finally:
        if broker == "rabbitmq":
            subprocess.run(["rabbitmqctl", "start_app"], check=True, capture_output=True, timeout=60)
        else:
            stop(first)
            workers(integration_broker)
    transfers += move_money(accounts, 4)
    wait_for(lambda: ended(transfers) and not processes.lagging_buckets(), timeout=90, what="everything published")
    assert parked() == 0

    expected = expected_since(start)
    assert len(expected) == len(accounts) * 2 + 12 * len(accounts) * 2 + len(transfers)
    received = take(queue, set(expected))
    by_id: dict[str, Received] = {}
    for message in received:
        assert message.message_id in expected, f"a message no event of this test explains: {message}"
        routing_key, stream, _ = expected[message.message_id]
        assert message.routing_key == routing_key
        assert message.content_type == "application/json"
        name, version = routing_key.rsplit(".v", 1)
        assert message.headers == {"event_type": name, "schema_version": int(version)}
        assert message.body["event_id"] == message.message_id
        if broker == "rabbitmq":
            assert message.delivery_mode == 2  # persistent
        first_seen = by_id.setdefault(message.message_id, message)
        assert first_seen.body == message.body, "a duplicate carries the same message"
    assert set(by_id) == set(expected)
    for stream in {s for _, s, _ in expected.values()}:
        order = [expected[m][2] for m in by_id if expected[m][1] == stream]  # first arrivals, in arrival order
        assert order == sorted(order), f"stream {stream} out of order"
    published, failed = counted()
    assert published - published_before >= len(expected) and failed > failed_before
    currencies = {m.body["account_id"]: m.body["currency"] for m in by_id.values() if "account_id" in m.body}
    assert sorted(set(currencies.values())) == ["BHD", "EUR", "JPY", "USD"]
    said = json.dumps([m.body for m in received])
    assert "Olga" not in said and "owner" not in said
