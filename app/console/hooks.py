"""Where live hints come from: the worker after a catch-up run and during rebuilds, and any
process that appends (its stream's page). Registered in ConsoleConfig.ready(), so that
`projections` and `eventstore` never import the console."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db import transaction

from app.console.push import hint
from eventstore.records import AppendResult

WORKED = frozenset({"applied", "drained", "more"})  # the run read (and, woken by an append, applied) events
TOPIC_OF = {"account_summary": "accounts", "transfers": "transfers"}  # read models with pages of their own


STREAM_HINTS_MAX = 32  # a batch that touched more streams tells the pages by the coarse topics only


def after_catch_up(bucket: int, outcomes: Mapping[str, str], streams: set) -> None:
    """A catch-up run is woken by appends: when it worked, the log grew and read models moved.
    ("drained" may also mean a re-queued run that found nothing: a hint too many, coalesced.)
    A page about one stream (an account's) hears of its own changes at once: stream topics are
    hardly ever coalesced, unlike "accounts", which every deposit anywhere touches."""
    if len(streams) <= STREAM_HINTS_MAX:
        for stream_id in streams:
            hint(f"stream:{stream_id}")
    worked = [name for name, outcome in outcomes.items() if outcome in WORKED]
    if worked:
        hint("events")
        for name in worked:
            if name in TOPIC_OF:
                hint(TOPIC_OF[name])
    if worked or "failed" in outcomes.values():
        hint("projections")


def rebuild_progress(projection: str, progress: dict[str, Any]) -> None:
    hint("projections")


def after_append(using: str, result: AppendResult) -> None:
    """A stream page reads the stream itself (no horizon): it may look as soon as the append commits."""
    stream_id = result.stream_id
    transaction.on_commit(lambda: hint(f"stream:{stream_id}"), using=using)


def register() -> None:
    from eventstore import hooks as store_hooks
    from projections import catchup, rebuild

    for hooks, hook in (
        (catchup.after_catch_up, after_catch_up),
        (rebuild.progress_listeners, rebuild_progress),
        (store_hooks.after_append, after_append),
    ):
        if hook not in hooks:
            hooks.append(hook)
