"""Figures shared by every viewer of the console for a few seconds through the cache (Redis).

The cache only spares the database a repeated count: while Redis cannot be reached, the page
computes its figure itself and is shown as usual, instead of answering 503 for the lack of a
courtesy (the soak's console visitor found the streams page and the catalog down with the broker).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import redis
from django.core.cache import cache

log = logging.getLogger(__name__)
T = TypeVar("T")
WARN_EVERY_S = 60.0
_last_warning = 0.0


def shared(key: str, compute: Callable[[], T], seconds: float) -> T:
    """`compute()`, kept in the cache under `key` for `seconds`; computed here when Redis is away."""
    try:
        return cache.get_or_set(key, compute, seconds)
    except (redis.ConnectionError, redis.TimeoutError):
        global _last_warning
        if time.monotonic() - _last_warning >= WARN_EVERY_S:
            _last_warning = time.monotonic()
            log.warning("the cache (Redis) cannot be reached: console figures are computed per request")
        return compute()
