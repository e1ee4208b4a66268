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
    version = models.PositiveIntegerField(default=1)  # the version whose tables serve reads
    generation = models.PositiveIntegerField(default=1)  # goes up with every rebuild swapped in
    paused = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


class BucketCheckpoint(models.Model):
    """The last event of a bucket applied to a projection's read model (or handled by a process
    manager), moved by compare-and-set in the same transaction as the read model; a parked
    (failed) bucket records its event. Not `eventstore.records.Checkpoint`, the place in the log
    that its (tx_id, position) hold. Raw SQL names its table `projections_checkpoint`."""

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
        db_table = "projections_checkpoint"
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


class Rebuild(models.Model):
    """A blue/green rebuild of one projection: its new tables grow in a scratch schema from
    position zero, in time slices whose progress lives here (a killed worker resumes), while the
    current tables keep serving; then one short transaction swaps them in."""

    class State(models.TextChoices):
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    projection = models.CharField(max_length=100)
    version = models.PositiveIntegerField()  # the version being built
    ticket = models.PositiveIntegerField(default=1)  # the one chain of slices allowed to go on
    state = models.CharField(max_length=10, choices=State.choices, default=State.RUNNING)
    reason = models.CharField(max_length=100, blank=True)  # api, shell, version change
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    tx_id = models.BigIntegerField(default=0)  # where the new tables stand in the log's read order
    position = models.BigIntegerField(default=0)
    done = models.BigIntegerField(default=0)  # events of the projection's types applied so far
    total = models.BigIntegerField(default=0)  # estimated: done plus what is left
    events_per_s = models.FloatField(default=0)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["projection"], condition=models.Q(state="running"), name="projections_rebuild_one_running"
            )
        ]

    def __str__(self) -> str:
        return f"rebuild of {self.projection} v{self.version} ({self.state})"

    @property
    def schema(self) -> str:
        return f"eventfold_rebuild_{self.pk}"

    @property
    def eta_s(self) -> float | None:
        if self.state != self.State.RUNNING or not self.events_per_s:
            return None
        return round(max(self.total - self.done, 0) / self.events_per_s, 1)

    def progress(self) -> dict:
        return {
            "id": self.pk,
            "version": self.version,
            "state": self.state,
            "done": self.done,
            "total": max(self.total, self.done),
            "events_per_s": round(self.events_per_s, 1),
            "eta_s": self.eta_s,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "error": self.error or None,
        }
