"""A channel whose connection Celery has already collected and closed, holding a delivered and
unacknowledged message, raises only connection errors (app/core/broker.py), which kombu and
Celery handle, when it is closed or the message acknowledged: without the guard both raise
AttributeError, on which Celery 5.7.0's worker exits."""

from __future__ import annotations

import logging
from uuid import uuid4

import pytest
from django.conf import settings
from kombu import Connection, Exchange, Queue
from kombu.common import ignore_errors
from kombu.transport import redis as kombu_redis

from app.core import broker


def _held() -> tuple[Connection, object, object]:
    """A connection, its channel, and a message the channel delivered and nobody acknowledged."""
    name = f"test.broker-loss.{uuid4().hex}"
    queue = Queue(name, Exchange(name), name, auto_delete=True)
    with Connection(settings.CELERY_BROKER_URL) as conn:
        conn.Producer(serializer="json").publish({"x": 1}, exchange=queue.exchange, routing_key=name, declare=[queue])
    conn = Connection(settings.CELERY_BROKER_URL)
    channel = conn.default_channel
    got: list = []
    conn.Consumer(queue, callbacks=[lambda body, message: got.append(message)], channel=channel).consume()
    conn.drain_events(timeout=5)
    assert len(got) == 1 and channel.qos._delivered
    return conn, channel, got[0]


def _lost(channel) -> None:
    """What Celery 5.7.0 leaves after a lost connection: the transport detached (collect) and the
    channel's pool dropped (close)."""
    channel._disconnect_pools()
    channel.connection.client = None


@pytest.fixture
def guarded():
    broker.install()


def test_closing_a_lost_channel_with_a_message_in_hand_is_a_connection_error(guarded) -> None:
    conn, channel, _ = _held()
    _lost(channel)
    ignore_errors(conn, channel.close)  # as Celery closes it: connection errors are ignored
    ignore_errors(conn, conn.release)


def test_acknowledging_on_a_lost_channel_is_logged_not_raised(guarded, caplog) -> None:
    conn, channel, message = _held()
    _lost(channel)
    with caplog.at_level(logging.CRITICAL):
        message.ack_log_error(logging.getLogger("test"), conn.connection_errors)  # as Celery acks
    assert "Couldn't ack" in caplog.text
    ignore_errors(conn, conn.release)


def test_without_the_guard_kombu_raises_attribute_errors_there(monkeypatch) -> None:
    """The tests above mean something: kombu's own channel meets the detached client."""
    monkeypatch.setattr(kombu_redis.Channel, "_get_pool", broker._original)
    conn, channel, message = _held()
    _lost(channel)
    with pytest.raises(AttributeError):
        message.ack_log_error(logging.getLogger("test"), conn.connection_errors)
    with pytest.raises(AttributeError):
        ignore_errors(conn, channel.close)
    monkeypatch.undo()
    ignore_errors(conn, conn.release)
