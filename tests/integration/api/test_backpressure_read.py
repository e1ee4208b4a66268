"""Commands read the published projection lag at most once per BACKPRESSURE_READ_EVERY_S per
process (projections/flags.py, recent_max_lag): a figure another process publishes reaches this
one's commands within that, and this process's own publishing at once."""

from __future__ import annotations

import pytest

from projections import backpressure, flags


@pytest.fixture
def clock(settings, monkeypatch):
    settings.BACKPRESSURE_READ_EVERY_S = 1.0
    now = [5_000_000.0]
    monkeypatch.setattr(flags, "clock", lambda: now[0])
    flags.publish_max_lag(0)
    yield now
    flags.publish_max_lag(0)


def published_elsewhere(lag: int) -> None:
    """As the beat's process publishes it: Redis only, nothing of this process's memory."""
    flags.client().set(flags.max_lag_key(), lag, ex=flags.MAX_LAG_KEEP_S)


def test_another_process_figure_is_seen_within_the_read_interval(clock, settings):
    assert not backpressure.too_far_behind()
    published_elsewhere(settings.BACKPRESSURE_MAX_LAG + 1)
    clock[0] += 0.99
    assert not backpressure.too_far_behind()  # read less than a second ago: not read again
    clock[0] += 0.01
    assert backpressure.too_far_behind()  # read again: refused from now on
    published_elsewhere(0)
    clock[0] += 1.0
    assert not backpressure.too_far_behind()


def test_this_process_figure_is_seen_at_once(clock, settings):
    assert not backpressure.too_far_behind()
    flags.publish_max_lag(settings.BACKPRESSURE_MAX_LAG + 1)
    assert backpressure.too_far_behind()
