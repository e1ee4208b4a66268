"""Backpressure: when projections fall too far behind, commands are refused with 503 and a
Retry-After, rather than growing a backlog that read-your-writes waits would time out on.

The beat task measures the largest lag every few seconds and publishes it (projections.flags);
each command reads that one key (no lag query on the command path).
"""

from __future__ import annotations

from django.conf import settings

from projections import flags


def too_far_behind() -> bool:
    return flags.published_max_lag() > settings.BACKPRESSURE_MAX_LAG
