"""The repository on either store: load by folding, save with the expected version, snapshots,
"as of" loads, and the state cache."""

import time
from datetime import UTC, datetime
from uuid import uuid4

import pytest

from eventstore.errors import AggregateNotFound, ConcurrencyError
from eventstore.repository import Repository, StateCache, seal_snapshot
from tests.support import Tally


def test_save_and_load_fold_the_stream(store):
    repo = Repository(Tally, store, snapshot_every=0)
    tally = Tally.open("groceries")
    tally.add(5)
    tally.add(7)
    result = repo.save(tally)
    assert result.version == 3 and tally.version == 3 and tally.pending_events == []
    loaded = repo.load(tally.id)
    assert loaded.state.model_dump() == {"name": "groceries", "total": 12, "count": 2}
    assert loaded.version == 3
    assert repo.save(loaded) is None  # nothing pending, nothing written


def test_saving_a_stale_aggregate_is_a_conflict(store):
    repo = Repository(Tally, store, snapshot_every=0)
    tally = Tally.open("x")
    repo.save(tally)
    first, second = repo.load(tally.id), repo.load(tally.id)
    first.add(1)
    repo.save(first)
    second.add(2)
    with pytest.raises(ConcurrencyError):
        repo.save(second)
    assert repo.load(tally.id).state.total == 1


def test_missing_aggregate(store):
    with pytest.raises(AggregateNotFound):
        Repository(Tally, store).load(uuid4())


def test_saving_with_event_ids_is_idempotent(store):
    repo = Repository(Tally, store, snapshot_every=0)
    tally = Tally.open("retry")
    ids = [uuid4()]
    first = repo.save(tally, metadata={"actor": "ann"}, event_ids=ids)
    again = Tally.open("retry", id=tally.id)
    assert repo.save(again, metadata={"actor": "ann"}, event_ids=ids) == first
    [event] = store.read_stream(tally.id)
    assert event.event_id == ids[0] and event.metadata == {"actor": "ann"}


def test_snapshot_plus_tail_equals_a_full_fold(store):
    with_snapshots = Repository(Tally, store, snapshot_every=10)
    without = Repository(Tally, store, snapshot_every=0)
    tally = Tally.open("long")
    with_snapshots.save(tally)
    for i in range(1, 26):  # versions 2..26, saved one by one
        tally.add(i)
        with_snapshots.save(tally)
    assert store.snapshot(tally.id)[:2] == (20, 1)
    from_snapshot, full = with_snapshots.load(tally.id), without.load(tally.id)
    assert from_snapshot.version == full.version == 26
    assert from_snapshot.state == full.state
    assert full.state.total == sum(range(1, 26))


def test_a_snapshot_of_another_shape_is_ignored_and_dropped(store):
    repo = Repository(Tally, store, snapshot_every=2)
    tally = Tally.open("v")
    tally.add(1)
    repo.save(tally)
    assert store.snapshot(tally.id)[:2] == (2, 1)
    store.save_snapshot(tally.id, "tally", 2, 0, '{"bogus": 1}')  # as an older shape of the state wrote it
    assert store.snapshot(tally.id)[:2] == (2, 0)
    assert repo.load(tally.id).state.total == 1
    assert store.snapshot(tally.id) is None


def test_a_forged_snapshot_is_ignored_and_dropped(store):
    """Loading trusts a snapshot's state, so whoever may write the snapshot table (the application
    role) must not be able to choose it: each snapshot carries a MAC keyed by SECRET_KEY."""
    repo = Repository(Tally, store, snapshot_every=2)
    tally = Tally.open("honest")
    tally.add(1)
    repo.save(tally)
    genuine = store.snapshot(tally.id)[2]
    assert repo.load(tally.id).state.total == 1 and store.snapshot(tally.id)[2] == genuine  # a genuine one is kept
    forgeries = ['{"name": "honest", "total": 1000000, "count": 1}']  # a bare state, as snapshots once were
    forgeries.append(genuine.replace('\\"total\\":1,', '\\"total\\":1000000,'))  # the sealed one, changed
    for forged in forgeries:
        store.drop_snapshot(tally.id)
        store.save_snapshot(tally.id, "tally", 2, 1, forged)
        assert repo.load(tally.id).state.total == 1
        assert store.snapshot(tally.id) is None
    assert forgeries[1] != genuine


def test_a_snapshot_the_log_does_not_back_is_ignored(store):
    """A sealed snapshot counts only if the log holds, at its version, the event it says it folded
    last (a snapshot from another database or from before a restore does not fit this log)."""
    repo = Repository(Tally, store, snapshot_every=0)
    tally = Tally.open("x")
    tally.add(1)
    repo.save(tally)
    state = '{"name": "x", "total": 1000000, "count": 1}'
    store.save_snapshot(tally.id, "tally", 2, 1, seal_snapshot("tally", tally.id, 2, 1, uuid4(), state))
    assert repo.load(tally.id).state.total == 1
    assert store.snapshot(tally.id) is None
    last = store.read_stream(tally.id)[-1].event_id
    store.save_snapshot(tally.id, "tally", 2, 1, seal_snapshot("tally", tally.id, 2, 1, last, state))
    assert repo.load(tally.id).state.total == 1000000  # what the seal vouches for is trusted as it is
    store.save_snapshot(tally.id, "tally", 3, 1, seal_snapshot("tally", tally.id, 3, 1, last, state))
    assert repo.load(tally.id).state.total == 1  # a version the log does not have


def test_a_snapshot_is_only_replaced_by_a_newer_one(store):
    sid = uuid4()
    store.save_snapshot(sid, "tally", 5, 1, '{"total": 5}')
    store.save_snapshot(sid, "tally", 3, 1, '{"total": 3}')
    assert store.snapshot(sid)[:2] == (5, 1)
    store.save_snapshot(sid, "tally", 7, 1, '{"total": 7}')
    assert store.snapshot(sid)[:2] == (7, 1)
    store.drop_snapshot(sid)
    assert store.snapshot(sid) is None


def test_load_as_of_a_version_and_a_time(store):
    repo = Repository(Tally, store, snapshot_every=2)
    tally = Tally.open("history")
    repo.save(tally)
    times = []
    for amount in (10, 20, 30):
        tally.add(amount)
        repo.save(tally)
        times.append(datetime.now(UTC))
        time.sleep(0.01)
    assert repo.load(tally.id, version=1).state.total == 0
    assert repo.load(tally.id, version=3).state.total == 30  # the snapshot at 4 is too new: folded from zero
    assert repo.load(tally.id, version=3).version == 3
    assert repo.load(tally.id, at=times[0]).state.total == 10
    assert repo.load(tally.id, at=times[1]).version == 3
    with pytest.raises(AggregateNotFound):
        repo.load(tally.id, at=datetime(2000, 1, 1, tzinfo=UTC))


def test_a_cached_state_is_only_ever_old_never_wrong(store):
    cache = StateCache()
    cached, plain = Repository(Tally, store, snapshot_every=0, cache=cache), Repository(Tally, store, snapshot_every=0)
    tally = Tally.open("cached")
    cached.save(tally)
    assert cache.get("tally", tally.id)[0] == 1
    other = plain.load(tally.id)
    other.add(4)
    plain.save(other)  # the cache does not know: the next load reads the tail after its version
    loaded = cached.load(tally.id)
    assert (loaded.version, loaded.state.total) == (2, 4)
    assert cache.get("tally", tally.id)[0] == 2
