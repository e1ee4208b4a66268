"""Retention per category: events that may expire, as KurrentDB's `$maxAge` / `$maxCount`.

A category listed in the `EVENTFOLD_RETENTION` setting keeps an event only while it is younger
than `max_age` seconds and among the last `max_count` events of its stream (either or both).
Readers stop seeing an expired event at once (the reads filter it, see
`statements.retention_condition`); `manage.py enforce_retention` later deletes it for good, as
the owner role. A category not listed never expires, and an aggregate's category may not be
listed: its state is the fold of every one of its events.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from django.conf import settings

from eventstore.aggregate import aggregate_types


class Rule(NamedTuple):
    """How long a category's events live: `max_age` seconds, the last `max_count` of each stream."""

    category: str
    max_age: int | None = None
    max_count: int | None = None

    def expired(self, recorded_at: datetime, version: int, stream_version: int, now: datetime) -> bool:
        """Whether an event of this category, in a stream at `stream_version`, has expired at `now`."""
        too_old = self.max_age is not None and recorded_at < now - timedelta(seconds=self.max_age)
        too_many = self.max_count is not None and version <= stream_version - self.max_count
        return too_old or too_many


Policy = tuple[Rule, ...]  # hashable, so statements composed for a policy can be cached
LIMITS = ("max_age", "max_count")
MAX_LIMIT = 2**31 - 1


def parse(config: Mapping[str, Any]) -> Policy:
    """`{"category": {"max_age": seconds, "max_count": n}}` as rules; a sentence naming the
    problem (ValueError) for anything else."""
    if not isinstance(config, Mapping):
        raise ValueError("EVENTFOLD_RETENTION must be a dict: {category: {'max_age': seconds, 'max_count': n}}")
    rules = []
    for category, limits in sorted(config.items()):
        if not isinstance(category, str) or not category:
            raise ValueError(f"EVENTFOLD_RETENTION: {category!r} is not a category name")
        if category in aggregate_types:
            raise ValueError(
                f"EVENTFOLD_RETENTION: {category!r} is an aggregate's category, whose state needs every "
                "one of its events: its events may not expire"
            )
        if not isinstance(limits, Mapping) or not limits or set(limits) - set(LIMITS):
            raise ValueError(
                f"EVENTFOLD_RETENTION[{category!r}]: give max_age (seconds), max_count or both, nothing else"
            )
        for name, value in limits.items():
            if type(value) is not int or not 0 < value <= MAX_LIMIT:
                raise ValueError(f"EVENTFOLD_RETENTION[{category!r}][{name!r}]: a whole number from 1 to {MAX_LIMIT}")
        rules.append(Rule(category, limits.get("max_age"), limits.get("max_count")))
    return tuple(rules)


def configured() -> Policy:
    """The policy of the `EVENTFOLD_RETENTION` setting (empty: nothing expires)."""
    config = getattr(settings, "EVENTFOLD_RETENTION", None)
    return parse(config) if config else ()


def rule_of(policy: Policy, category: str) -> Rule | None:
    return next((rule for rule in policy if rule.category == category), None)
