"""The catch-up of one bucket, as the task `projections.catch_up_bucket` runs it: every
projection's batches first (runner), then every process manager's (which append, so never
inside a projection's transaction), again while the bucket was marked dirty meanwhile; then,
while there is more (or events wait behind the read horizon), the bucket is queued again.
The projections' batches carry each process manager past the events it does not handle (a
deposit, for the transfer process): one left with nothing to do does not run on its own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from projections import flags, processes, runner, wakeups

log = logging.getLogger(__name__)
REQUEUE_COUNTDOWN_S = 0.02  # another runner's transaction holds the horizon for milliseconds
# Called with (bucket, outcomes by projection, the streams whose events were applied) as soon as
# the projections of a bucket have caught up (before process managers run), e.g. by the console
# to push live hints; a hook that fails is logged, never fails the catch-up.
after_catch_up: list[Callable[[int, Mapping[str, str], set], None]] = []


def catch_up_bucket(bucket: int) -> dict[str, processes.Outcome]:
    """Bring every projection's bucket up to date, then every process manager's; re-queue while
    there is more. Returns the outcome by projection and process manager."""
    flags.clear_wake(bucket)
    passers = processes.passers()
    carried = {p.name for p in passers}
    while True:
        touched: set = set()
        outcomes: dict[str, processes.Outcome] = dict(runner.catch_up(bucket, touched=touched, passing=passers))
        _announce(bucket, {name: o for name, o in outcomes.items() if name not in carried}, touched)
        drained = {name for name in carried if outcomes.get(name) == "drained"}
        outcomes.update(processes.run_all(bucket, done=drained))
        if "busy" in outcomes.values():
            flags.mark_dirty(bucket)  # the holder looks again before it leaves
        if "busy" in outcomes.values() or not flags.take_dirty(bucket):
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
