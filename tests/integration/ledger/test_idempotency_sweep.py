"""Idempotency-Key records past their 24 hours are swept by a beat task, in bounded batches."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone

from app.core import idempotency
from app.core.models import ProcessedCommand
from app.core.tasks import sweep_idempotency


def records(ages_h: list[float]) -> None:
    user, _ = get_user_model().objects.get_or_create(username="olga")
    now = timezone.now()
    for i, age in enumerate(ages_h):
        ProcessedCommand.objects.create(
            user=user, key=f"k{i}-{age}h", fingerprint="f", result={}, created_at=now - timedelta(hours=age)
        )


def left() -> list[str]:
    return sorted(ProcessedCommand.objects.values_list("key", flat=True))


def test_old_records_go_in_bounded_batches_and_fresh_ones_stay(db):
    records([25, 26, 48, 24.01, 24 * 30, 23.9, 1, 0])
    assert idempotency.sweep(batch=2, max_batches=2) == (4, True)  # the four oldest, two at a time
    assert left() == ["k3-24.01h", "k5-23.9h", "k6-1h", "k7-0h"]
    assert idempotency.sweep(batch=2, max_batches=2) == (1, False)
    assert left() == ["k5-23.9h", "k6-1h", "k7-0h"]
    assert idempotency.sweep() == (0, False)
    assert left() == ["k5-23.9h", "k6-1h", "k7-0h"]


def test_the_beat_task_sweeps(db):
    records([25, 100, 2])
    assert sweep_idempotency.apply().get() == 2
    assert left() == ["k2-2h"]
    entries = [e for e in settings.CELERY_BEAT_SCHEDULE.values() if e["task"] == sweep_idempotency.name]
    assert len(entries) == 1 and entries[0]["schedule"] <= 3600
