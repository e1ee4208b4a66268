"""A channel whose connection Celery has already collected closes without an error, though it
holds a delivered, unacknowledged message (app/core/broker.py): without the guard, kombu's Redis
transport raises AttributeError there, and Celery 5.7.0's worker exits on it."""

from __future__ import annotations

from uuid import uuid4

import pytest
from django.conf import settings
from kombu import Connection, Exchange, Queue
from kombu.transport import redis as kombu_redis

from app.core import broker


def _held(url: str) -> tuple[Connection, object]:
    """A connection whose channel has delivered one message, not acknowledged."""
    name = f"test.broker-loss.{uuid4().hex}"
    queue = Queue(name, Exchange(name), name, auto_delete=True)
    with Connection(url) as conn:
        conn.Producer(serializer="json").publish({"x": 1}, exchange=queue.exchange, routing_key=name, declare=[queue])
    conn = Connection(url)
    channel = conn.default_channel
    got: list = []
    conn.Consumer(queue, callbacks=[lambda body, message: got.append(message)], channel=channel).consume()
    conn.drain_events(timeout=5)
    assert len(got) == 1 and channel.qos._delivered
    return conn, channel


def _collected_then_closed(conn: Connection, channel) -> None:
    channel.connection.client = None  # what Connection.collect() leaves behind (_do_close_transport)
    channel.close()


def test_closing_a_collected_channel_with_a_message_in_hand_does_not_raise() -> None:
    broker.install()
    conn, channel = _held(settings.CELERY_BROKER_URL)
    _collected_then_closed(conn, channel)  # raised AttributeError before the guard


def test_without_the_guard_kombu_raises_there(monkeypatch) -> None:
    """The test above means something: kombu's own restore meets the detached client."""
    monkeypatch.setattr(kombu_redis.QoS, "restore_unacked", broker._original)
    conn, channel = _held(settings.CELERY_BROKER_URL)
    with pytest.raises(AttributeError):
        _collected_then_closed(conn, channel)
