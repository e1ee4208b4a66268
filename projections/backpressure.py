"""Backpressure: when projections fall too far behind, commands are refused with 503 and a
Retry-After, rather than growing a backlog that read-your-writes waits would time out on.

The beat task measures the largest lag every few seconds and publishes it in Redis; each
command reads that one key (no lag query on the command path).
"""

from __future__ import annotations

import logging

from django.conf import settings

from projections.wakeups import _redis

log = logging.getLogger(__name__)
KEEP_S = 30  # a stale figure (beat stopped) expires instead of blocking commands forever


def key() -> str:
    return f"eventfold:{settings.QUEUE_PREFIX}max-lag"


def publish(lag: int) -> None:
    try:
        _redis().set(key(), lag, ex=KEEP_S)
    except Exception:
        log.warning("could not publish the projection lag", exc_info=True)


def current_lag() -> int:
    try:
        value = _redis().get(key())
    except Exception:
        return 0  # Redis down: do not refuse commands for that
    return int(value or 0)


def too_far_behind() -> bool:
    return current_lag() > settings.BACKPRESSURE_MAX_LAG
