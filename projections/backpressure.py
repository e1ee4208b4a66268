"""Backpressure: when projections fall too far behind, commands are refused with 503 and a
Retry-After, rather than growing a backlog that read-your-writes waits would time out on.

The beat task measures the largest lag every few seconds and publishes it (projections.flags);
each process reads that one key at most once per BACKPRESSURE_READ_EVERY_S (1 s), so a command
is refused at most that much later than the figure is published (no lag query on the command
path, and no Redis round trip on most commands).
"""

from __future__ import annotations

from django.conf import settings

from projections import flags


def too_far_behind() -> bool:
    return flags.recent_max_lag() > settings.BACKPRESSURE_MAX_LAG
