"""How a subscription's buckets are shared among its live consumers (app/integration/subscriptions.py:
`rebalance`), on rows in memory: fair shares, surplus given up, expired leases taken over, and a
new lease handing out from the checkpoint again."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from app.integration.models import SubscriptionBucket
from app.integration.subscriptions import rebalance

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(seconds=30)


def buckets(n: int = 64) -> list[SubscriptionBucket]:
    return [
        SubscriptionBucket(bucket=b, tx_id=10, position=b, delivered_tx_id=10, delivered_position=b) for b in range(n)
    ]


def held_by(rows: list[SubscriptionBucket], consumer: str) -> list[int]:
    return [r.bucket for r in rows if r.consumer == consumer and r.lease_expires_at and r.lease_expires_at > NOW]


def test_a_lone_consumer_takes_every_bucket():
    rows = buckets()
    kept, changed = rebalance(rows, "a", now=NOW, until=LATER, share=64)
    assert [r.bucket for r in kept] == list(range(64)) and len(changed) == 64
    assert all(r.lease_expires_at == LATER for r in rows)


def test_a_second_consumer_gets_its_share_once_the_first_gives_up_its_surplus():
    rows = buckets()
    rebalance(rows, "a", now=NOW, until=LATER, share=64)
    kept, _ = rebalance(rows, "b", now=NOW, until=LATER, share=32)
    assert kept == []  # nothing is free yet
    rebalance(rows, "a", now=NOW, until=LATER, share=32)
    assert held_by(rows, "a") == list(range(32))
    rebalance(rows, "b", now=NOW, until=LATER, share=32)
    assert held_by(rows, "b") == list(range(32, 64))


def test_three_consumers_never_hold_more_than_a_fair_share_and_hold_everything_between_them():
    rows = buckets()
    share = math.ceil(64 / 3)
    for consumer in ["a", "b", "c", "a", "b", "c"]:
        rebalance(rows, consumer, now=NOW, until=LATER, share=share)
    counts = [len(held_by(rows, c)) for c in "abc"]
    assert max(counts) <= share and sum(counts) == 64


def test_expired_leases_are_taken_over_and_hand_out_from_the_checkpoint_again():
    rows = buckets()
    for r in rows[:32]:
        r.consumer, r.lease_expires_at = "gone", NOW - timedelta(seconds=1)
        r.delivered_tx_id, r.delivered_position = 99, 999  # handed out, never acknowledged
    kept, _ = rebalance(rows, "a", now=NOW, until=LATER, share=64)
    assert len(kept) == 64
    assert all((r.delivered_tx_id, r.delivered_position) == (r.tx_id, r.position) for r in rows[:32])


def test_a_live_lease_of_another_consumer_is_never_taken():
    rows = buckets()
    for r in rows[:10]:
        r.consumer, r.lease_expires_at = "b", LATER
    kept, _ = rebalance(rows, "a", now=NOW, until=LATER, share=64)
    assert [r.bucket for r in kept] == list(range(10, 64)) and held_by(rows, "b") == list(range(10))
