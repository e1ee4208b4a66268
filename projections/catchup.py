"""The catch-up of the buckets that wait for one, as the task `projections.catch_up_pending`
runs it, and of one bucket, as `projections.catch_up_bucket` does.

A bucket's catch-up: every projection's batches first (runner), then every process manager's
(which append, so never inside a projection's transaction), again while the bucket was marked
dirty meanwhile; then, while there is more (or events wait behind the read horizon), the bucket
is queued again. The projections' batches carry each process manager past the events it does not
handle (a deposit, for the transfer process): one left with nothing to do does not run on its own.

The waiting buckets (wakeups.py) are taken together: their batches share one transaction
(runner.apply_batches: one lock-and-read, one read, one write and move for all of them). A bucket
that such a batch does not settle (a process manager with events of its own to handle, some of
its locks held elsewhere, an event that failed) then goes on alone, as above; one far behind (a
full batch) is queued as a task of its own, so that a backlog spreads over the worker's processes
as before; one that another catch-up holds whole is marked dirty for its holder. When commands come faster than
a catch-up, a catch-up takes the events of many of them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

from projections import flags, metrics, processes, runner, wakeups

log = logging.getLogger(__name__)
REQUEUE_COUNTDOWN_S = 0.02  # another runner's transaction holds the horizon for milliseconds
MAX_BUCKETS = 16  # taken by one task: more wait for the next (another worker process takes them meanwhile)
# Called with (bucket, outcomes by projection, the streams whose events were applied) as soon as
# the projections of a bucket have caught up (before process managers run), e.g. by the console
# to push live hints; a hook that fails is logged, never fails the catch-up.
after_catch_up: list[Callable[[int, Mapping[str, str], set], None]] = []


def catch_up_buckets(buckets: Sequence[int]) -> dict[int, dict[str, processes.Outcome]]:
    """Bring the buckets up to date: their batches together while each one settles in a batch (drained
    for every projection and process manager); a bucket that does not settle goes on alone
    (`catch_up_bucket`). A bucket that another catch-up holds (every projection busy) is marked
    dirty for its holder and looked at once more, as `catch_up_bucket` does; one marked dirty
    meanwhile is looked at again; one far behind (a full batch) is queued on its own. The outcomes
    by bucket."""
    passers = processes.passers()
    carried = [p.name for p in passers]
    group = runner.group()
    names = [p.name for p in group]
    everyone = [*names, *carried]
    results: dict[int, dict[str, processes.Outcome]] = {}
    alone: list[int] = []
    marked: set[int] = set()
    todo = list(buckets)
    for _ in range(runner.BATCHES_PER_RUN):
        if not todo:
            break
        touched: dict[int, set] = {bucket: set() for bucket in todo}
        with metrics.BATCH_SECONDS.labels("projection").time():
            batch = runner.apply_batches(group, todo, runner.BATCH_SIZE, touched, passers)
        settled, held = [], []
        for bucket, outcomes in batch.items():
            _announce(bucket, {name: o for name, o in outcomes.items() if name not in carried}, touched[bucket])
            results[bucket] = dict(outcomes)
            if all(outcomes.get(name) == "drained" for name in everyone):
                settled.append(bucket)
            elif all(outcomes.get(name) == "busy" for name in names):
                held.append(bucket)
            elif "applied" in outcomes.values():  # a full batch, so far behind: a task of its own, so
                wakeups.send_catch_up(bucket)  # that a backlog spreads over the worker's processes
            else:
                alone.append(bucket)
        dirty = flags.take_dirty_of(settled)
        for bucket in runner.behind_horizon_of([b for b in settled if b not in dirty]):
            wakeups.send_catch_up(bucket, countdown=REQUEUE_COUNTDOWN_S)
        # the holder may have looked for marks (after its commit) before these: look once more
        flags.mark_dirty_of([b for b in held if b not in marked])
        todo = sorted(dirty | {b for b in held if b not in marked})
        marked.update(held)
    for bucket in todo:  # still marked dirty after so many batches: a task of its own
        wakeups.send_catch_up(bucket)
    for bucket in alone:
        results[bucket] = catch_up_bucket(bucket)
    return results


def catch_up_bucket(bucket: int) -> dict[str, processes.Outcome]:
    """Bring every projection's bucket up to date, then every process manager's; re-queue while
    there is more. Returns the outcome by projection and process manager."""
    passers = processes.passers()
    carried = {p.name for p in passers}
    marked = False
    while True:
        touched: set = set()
        outcomes: dict[str, processes.Outcome] = dict(runner.catch_up(bucket, touched=touched, passing=passers))
        _announce(bucket, {name: o for name, o in outcomes.items() if name not in carried}, touched)
        drained = {name for name in carried if outcomes.get(name) == "drained"}
        outcomes.update(processes.run_all(bucket, done=drained))
        if "busy" in outcomes.values():
            if marked:
                break  # the mark was there before this look: whoever holds the bucket now sees it
            # Ask the holder to look again before it leaves; and look once more, since it may
            # have looked for a mark (after its commit) before this one was made.
            flags.mark_dirty(bucket)
            marked = True
        elif not flags.take_dirty(bucket):
            break
    if "more" in outcomes.values() or runner.behind_horizon(bucket):
        wakeups.send_catch_up(bucket, countdown=REQUEUE_COUNTDOWN_S)
    return outcomes


def _announce(bucket: int, outcomes: Mapping[str, str], touched: set) -> None:
    for hook in after_catch_up:
        try:
            hook(bucket, outcomes, touched)
        except Exception:
            log.exception("after_catch_up hook failed")
