"""Wake-ups while Redis or the broker is down (projections/wakeups.py): a committed command never
fails for a missed hint, the failure is logged once a minute rather than once per append, and
wake_all gives up at the first failure instead of waiting on each of the 64 buckets."""

from __future__ import annotations

import json
from uuid import uuid4

import pytest
import redis
from celery import Celery
from django.conf import settings

from projections import flags, wakeups


@pytest.fixture
def redis_down(monkeypatch):
    tried: list[int] = []
    monkeypatch.setattr(wakeups, "_fast_wake", lambda bucket: None)  # the path through Celery

    def refused(bucket: int) -> bool:
        tried.append(bucket)
        raise redis.ConnectionError("Error 111 connecting to redis. Connection refused.")

    monkeypatch.setattr(flags, "claim_wake", refused)
    monkeypatch.setattr(wakeups, "_last_warning", 0.0)
    monkeypatch.setattr(wakeups.time, "monotonic", lambda: 1000.0)  # one moment: inside one minute
    return tried


@pytest.fixture
def warnings(monkeypatch) -> list[tuple[str, dict]]:
    said: list[tuple[str, dict]] = []
    monkeypatch.setattr(wakeups.log, "warning", lambda message, *args, **kwargs: said.append((message % args, kwargs)))
    return said


def test_a_missed_wake_up_is_logged_once_a_minute(redis_down, warnings):
    for bucket in range(10):
        wakeups.wake(bucket)  # never raises: the command has committed
    assert redis_down == list(range(10))
    [(message, options)] = warnings
    assert "the beat safety net will" in message and isinstance(options["exc_info"], redis.ConnectionError)


def test_wake_all_stops_at_the_first_failure(redis_down, warnings):
    wakeups.wake_all()
    assert redis_down == [0]
    assert len(warnings) == 1


def test_wake_all_wakes_every_bucket_when_it_can(monkeypatch):
    marked: list[int] = []
    sent: list[str] = []
    monkeypatch.setattr(wakeups, "_fast_wake", lambda bucket: None)  # the path through Celery

    def claim(bucket: int) -> bool:
        marked.append(bucket)
        return not sent  # the flag stands once the first task is on its way

    monkeypatch.setattr(flags, "claim_wake", claim)
    monkeypatch.setattr(wakeups, "send_pending", lambda: sent.append("pending"))
    wakeups.wake_all()
    assert marked == list(range(64))
    assert sent == ["pending"]  # one task takes them all


# -- the wake-up in one round trip ---------------------------------------------------------------
BUCKET = 63


@pytest.fixture
def queue(monkeypatch):
    """A Celery app like ours whose catch-up tasks go to a queue of this test's own (a worker of
    the session must not take them), that queue's Redis list and the bucket's flag, empty."""
    key = f"test.fast-wake.{uuid4().hex}"
    app = Celery("eventfold-test", broker=settings.CELERY_BROKER_URL)
    app.conf.update(broker_transport_options=settings.CELERY_BROKER_TRANSPORT_OPTIONS)
    app.conf.task_routes = {"projections.*": {"queue": key}}
    monkeypatch.setattr(wakeups, "current_app", app)
    monkeypatch.setattr(wakeups, "_fast", wakeups._UNMADE)
    redis_client = flags.client()
    redis_client.delete(key, flags.wake_key())
    redis_client.srem(flags.pending_key(), BUCKET)
    yield redis_client, key
    redis_client.delete(key, flags.wake_key())
    redis_client.srem(flags.pending_key(), BUCKET)


def _normalised(raw: bytes) -> dict:
    message = json.loads(raw)
    task_id = message["headers"]["id"]
    assert message["headers"]["root_id"] == message["properties"]["correlation_id"] == task_id
    for where, field in (("headers", "id"), ("headers", "root_id"), ("properties", "correlation_id")):
        message[where][field] = "ID"
    message["properties"]["delivery_tag"] = "TAG"
    return message


def test_a_wake_up_sets_the_flag_and_pushes_celerys_own_message_once(queue):
    redis_client, key = queue
    assert wakeups._fast_wake(BUCKET) is True
    assert wakeups._fast_wake(BUCKET) is False  # the flag stands: one message for a burst
    assert wakeups._fast_wake(BUCKET - 1) is False  # for any bucket: the task takes every waiting one
    assert redis_client.pttl(flags.wake_key()) > 0
    assert {BUCKET - 1, BUCKET} <= {int(b) for b in redis_client.smembers(flags.pending_key())}
    redis_client.srem(flags.pending_key(), BUCKET - 1)
    [fast] = redis_client.lrange(key, 0, -1)
    redis_client.delete(key)
    wakeups.send_pending()  # Celery's own send_task
    [celerys] = redis_client.lrange(key, 0, -1)
    assert _normalised(fast) == _normalised(celerys)
    assert json.loads(fast)["headers"]["task"] == wakeups.PENDING_TASK


def test_each_wake_up_gets_ids_of_its_own(queue):
    redis_client, key = queue
    wakeups._fast_wake(BUCKET)
    redis_client.delete(flags.wake_key())
    wakeups._fast_wake(BUCKET)
    first, second = (json.loads(raw) for raw in redis_client.lrange(key, 0, -1))
    assert first["headers"]["id"] != second["headers"]["id"]
    assert first["properties"]["delivery_tag"] != second["properties"]["delivery_tag"]


def test_a_traced_process_sends_through_celery(queue, monkeypatch):
    """Celery's instrumentation puts the trace context in the messages it sends."""
    monkeypatch.setattr(wakeups.tracing, "active", lambda: True)
    assert wakeups._fast_wake(BUCKET) is None


def test_a_broker_in_another_redis_is_sent_to_through_celery(queue, monkeypatch):
    pool = flags.client().connection_pool  # the same server, another database
    other = redis.Redis(connection_pool=type(pool)(pool.connection_class, **{**pool.connection_kwargs, "db": 15}))
    monkeypatch.setattr(flags, "client", lambda: other)
    assert wakeups._fast_wake(BUCKET) is None


def test_a_message_that_could_not_be_made_is_made_again_later(queue, monkeypatch):
    """The broker away when a bucket's first wake-up comes: through Celery for a while, then the
    message is made again, not given up for the life of the process."""
    monkeypatch.setattr(wakeups, "_unmade_until", 0.0)
    made = wakeups._made
    monkeypatch.setattr(wakeups, "_made", lambda: (_ for _ in ()).throw(ConnectionError("away")))
    assert wakeups._fast_wake(BUCKET) is None
    monkeypatch.setattr(wakeups, "_made", made)
    assert wakeups._fast_wake(BUCKET) is None  # not yet
    now = wakeups.time.monotonic()
    monkeypatch.setattr(wakeups.time, "monotonic", lambda: now + wakeups.REMAKE_AFTER_S + 1)
    assert wakeups._fast_wake(BUCKET) is True


def test_the_task_clears_the_flag_and_takes_the_waiting_buckets(queue, monkeypatch):
    """Taking is atomic with clearing the flag: a bucket marked afterwards sends a task of its own."""
    redis_client, key = queue
    monkeypatch.setattr(flags, "pending_key", lambda: f"{key}.pending")  # none of the session's buckets
    for bucket in (BUCKET, 7, 3):
        wakeups._fast_wake(bucket)
    assert redis_client.llen(key) == 1
    taken, left = flags.take_pending(2)
    assert len(taken) == 2 and set(taken) < {3, 7, BUCKET} and left == 1
    assert redis_client.exists(flags.wake_key()) == 0
    assert wakeups._fast_wake(5) is True  # a task of its own
    taken, left = flags.take_pending(16)
    assert left == 0 and 5 in taken and len(taken) == 2  # the one left before, and the new one
    assert flags.take_pending(16) == ([], 0)
    redis_client.delete(f"{key}.pending")
