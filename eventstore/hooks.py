"""What runs after the store writes: other apps subscribe here, so the store imports none of them.

    from eventstore import hooks

    hooks.after_append.append(on_append)  # called with (database alias, AppendResult)
    hooks.measured.append(on_measure)  # called with (category, event type names, seconds)

Hooks run inside the appending transaction, right after the append: a subscriber that must wait
for the commit (a wake-up, a live hint) uses `transaction.on_commit` from there.

`measured` hears of every append that wrote, with how long it took (the metrics count here; a
subscriber must be cheap and must not raise).

`suspended()` turns every effect on the outside world off for a while, in this process: appends
call no hook, and subscribers ask `hooks.enabled()` before they wake anything of their own (a
rebuild's swap). A scratch log (the benchmark's) is nobody else's business.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from eventstore.records import AppendResult

after_append: list[Callable[[str, AppendResult], None]] = []
measured: list[Callable[[str, list[str], float], None]] = []

_lock = threading.Lock()
_suspensions = 0


def enabled() -> bool:
    """False while some `suspended()` block runs in this process."""
    return _suspensions == 0


@contextmanager
def suspended() -> Iterator[None]:
    """No hook runs, and no subscriber wakes anything, until the block ends (process-wide; nests)."""
    global _suspensions
    with _lock:
        _suspensions += 1
    try:
        yield
    finally:
        with _lock:
            _suspensions -= 1


def appended(using: str, result: AppendResult) -> None:
    """Tell every subscriber of an append (the store calls this; nobody else needs to)."""
    if _suspensions:
        return
    for hook in after_append:
        hook(using, result)


def timed(category: str, types: list[str], seconds: float) -> None:
    """Tell every `measured` subscriber of an append that wrote (the store calls this)."""
    if _suspensions:
        return
    for hook in measured:
        hook(category, types, seconds)
