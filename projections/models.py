"""Where each projection stands: one checkpoint row per (projection, bucket)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class Status(models.TextChoices):
    RUNNING = "running", "Running"
    CATCHING_UP = "catching_up", "Catching up"
    REBUILDING = "rebuilding", "Rebuilding"
    PAUSED = "paused", "Paused"
    FAILED = "failed", "Failed"


class ProjectionState(models.Model):
    name = models.CharField(max_length=100, primary_key=True)
    version = models.PositiveIntegerField(default=1)
    paused = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


class Checkpoint(models.Model):
    """The last event of a bucket applied to a projection's read model, moved by compare-and-set
    in the same transaction as the read model; a parked (failed) bucket records its event."""

    projection = models.CharField(max_length=100)
    bucket = models.SmallIntegerField()
    tx_id = models.BigIntegerField(default=0)
    position = models.BigIntegerField(default=0)
    failed = models.BooleanField(default=False)
    error_event_id = models.UUIDField(null=True, blank=True)
    error_position = models.BigIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["projection", "bucket"], name="projections_checkpoint_key")]


class Skip(models.Model):
    """An event an operator chose to skip for a projection; honoured by rebuilds and verification."""

    projection = models.CharField(max_length=100)
    event_id = models.UUIDField()
    position = models.BigIntegerField()
    bucket = models.SmallIntegerField()
    skipped_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    skipped_at = models.DateTimeField(default=timezone.now)
    reason = models.TextField(blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["projection", "event_id"], name="projections_skip_key")]
