"""Live hints to console pages: `hint("events")` tells every page showing events that they may
have changed. Small, coalesced, never HTML, never an error for the caller.

Topics: "events" (the log grew), "projections" (status, lag or rebuild progress changed),
"stream:<uuid>" (that stream grew), "accounts", "transfers". Pages subscribe with
`live_topics` in their context (see console/base.html and console.js).

(A placeholder: the channel-layer sender is being built.)
"""

from __future__ import annotations


def hint(topic: str) -> None:
    """Tell subscribed pages that `topic` changed. Thread-safe, non-blocking, never raises."""
