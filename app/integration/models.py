"""The integration package's tables. The inbox's: the ids of the messages handled (so a redelivery
acts no more) and the dead letters (messages parked with their reason, until an operator replays or
discards them). The named persistent subscriptions': their checkpoints and leases."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class InboxMessage(models.Model):
    """A message handled: written in the transaction of the command it ran, after the append."""

    message_id = models.TextField(primary_key=True)
    type = models.TextField()
    handled_at = models.DateTimeField(db_index=True)

    class Meta:
        db_table = "integration_inbox"


class DeadLetter(models.Model):
    """A message that could not be handled: what arrived (the body bounded to INBOX_MAX_BODY_BYTES),
    why not (a reason code and a detail that quotes no input), and what became of it."""

    class Status(models.TextChoices):
        PARKED = "parked"
        REPLAYED = "replayed"
        DISCARDED = "discarded"

    message_id = models.TextField(null=True)  # None: the message came without one
    type = models.TextField(blank=True)
    routing_key = models.TextField(blank=True)
    headers = models.JSONField(default=dict)
    correlation_id = models.TextField(blank=True)  # the message's (property or header), as given
    body = models.BinaryField()
    body_truncated = models.BooleanField(default=False)
    reason = models.CharField(max_length=64)
    detail = models.TextField(blank=True)
    attempts = models.IntegerField(default=1)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField(db_index=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PARKED)
    settled_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    settled_at = models.DateTimeField(null=True)

    class Meta:
        db_table = "integration_dead_letter"
        constraints = [
            models.UniqueConstraint(
                fields=["message_id"], condition=Q(message_id__isnull=False), name="dead_letter_once"
            )
        ]
        indexes = [models.Index(fields=["status", "-last_seen"], name="dead_letter_status")]


# -- named persistent subscriptions (app/integration/subscriptions.py) ---------------------------
class Subscription(models.Model):
    """A named, persistent subscription to the log: the server keeps its checkpoints (one per
    bucket) and hands its buckets out to the consumers that fetch from it."""

    name = models.CharField(max_length=100, primary_key=True)
    category = models.CharField(max_length=200, blank=True, default="")  # "": every category
    types = models.JSONField(default=list, blank=True)  # event type names; empty: every type
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        db_table = "integration_subscription"


class SubscriptionBucket(models.Model):
    """One bucket of a subscription: its checkpoint (the last event acknowledged, as the
    (tx_id, position) pair of the read order), the consumer holding its lease and until when, and
    the furthest event handed to that consumer (an ack may not go past it)."""

    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE, related_name="buckets")
    bucket = models.SmallIntegerField()
    tx_id = models.BigIntegerField(default=0)
    position = models.BigIntegerField(default=0)
    delivered_tx_id = models.BigIntegerField(default=0)
    delivered_position = models.BigIntegerField(default=0)
    consumer = models.CharField(max_length=100, null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    acked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "integration_subscription_bucket"
        constraints = [
            models.UniqueConstraint(fields=["subscription", "bucket"], name="integration_subscription_bucket_key")
        ]


class SubscriptionConsumer(models.Model):
    """A consumer seen fetching from a subscription; alive until `expires_at` (a fetch renews it).
    The live consumers of a subscription share its buckets fairly."""

    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE, related_name="consumers")
    consumer = models.CharField(max_length=100)
    last_fetch_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()

    class Meta:
        db_table = "integration_subscription_consumer"
        constraints = [
            models.UniqueConstraint(fields=["subscription", "consumer"], name="integration_subscription_consumer_key")
        ]
