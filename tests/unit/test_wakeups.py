"""Wake-ups while Redis or the broker is down (projections/wakeups.py): a committed command never
fails for a missed hint, the failure is logged once a minute rather than once per append, and
wake_all gives up at the first failure instead of waiting on each of the 64 buckets."""

from __future__ import annotations

import pytest
import redis

from projections import flags, wakeups


@pytest.fixture
def redis_down(monkeypatch):
    tried: list[int] = []

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
    sent: list[int] = []
    monkeypatch.setattr(flags, "claim_wake", lambda bucket: True)
    monkeypatch.setattr(wakeups, "send_catch_up", lambda bucket, countdown=None: sent.append(bucket))
    wakeups.wake_all()
    assert sent == list(range(64))
