"""Event ids the store makes for events that come without one: time-ordered UUIDs (version 7,
RFC 9562). The first 48 bits are the Unix time in milliseconds, the rest random but for the
version and variant bits. Ordered by time, a new id lands on the right-most leaf of the unique
index on `event_id`, as the log's other indexes do, instead of on a random leaf: on a log of
millions of events that index no longer has to be read from disk for each append. Ids made in
the same millisecond are in no particular order among themselves; nothing reads order from ids
(the log's order is its positions). Ids a caller gives (derived from a command's id, say) are
kept as given, whatever their version.

All of an append's ids come from one call to the OS: masks set the time, version and variant
bits of every 16-byte id at once, so no Python loop touches the bytes."""

from __future__ import annotations

import functools
import os
import time

_BITS = (1 << 128) - 1
_TIME = ((1 << 48) - 1) << 80
_VERSION = 0xF000 << 64
_VARIANT = 0xC000 << 48
_KEEP = _BITS & ~_TIME & ~_VERSION & ~_VARIANT
_SET = (0x7000 << 64) | (0x8000 << 48)


@functools.cache
def _masks(n: int) -> tuple[int, int, int]:
    keep = set_ = ones = 0
    for _ in range(n):
        keep, set_, ones = keep << 128 | _KEEP, set_ << 128 | _SET, ones << 128 | 1
    return keep, set_, ones


def new_event_ids(n: int) -> list[bytes]:
    """n version-7 UUIDs of this millisecond, as 16-byte strings."""
    keep, set_, ones = _masks(n)
    stamp = (time.time_ns() // 1_000_000) << 80
    blob = ((int.from_bytes(os.urandom(16 * n)) & keep) | set_ | ones * stamp).to_bytes(16 * n)
    return [blob[i : i + 16] for i in range(0, 16 * n, 16)]
