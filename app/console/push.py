"""Live hints to console pages: `hint("events")` tells every page showing events that they may
have changed. Small, coalesced, never HTML, never an error for the caller.

Topics: "events" (the log grew), "projections" (status, lag or rebuild progress changed),
"stream:<uuid>" (that stream grew), "accounts", "transfers". Pages subscribe with
`live_topics` in their context (see console/base.html and console.js); a hint reaches the
channel-layer group `group_name(topic)`.

Each process (a web server, a Celery pool process, a management command) sends from one
long-lived asyncio event loop in a daemon thread, started on first use and started again in a
forked child (Celery's prefork pool), and fed through the loop's thread-safe call queue
(`call_soon_threadsafe`). Per topic it sends at most one hint every `MIN_INTERVAL_S`: a hint
arriving sooner is folded into one trailing send, so the last change is never lost and a burst
of thousands of events costs a page a few requests, not thousands.

A stream topic is sent only while some page watches that stream: every command and every
catch-up hints the streams it touched, and nearly all of them are watched by nobody. The live
sockets count their stream topics in a Redis hash (`watch`, `unwatch`); the sender looks the
stream topics it is about to send up in it, those that came together in one round trip, and
sends to the watched ones only (or to all, when it cannot tell). A socket that died without
saying so leaves its count behind: its streams' hints are sent for nothing, as they all were.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from typing import Any

log = logging.getLogger(__name__)

MIN_INTERVAL_S = 0.33  # at most ~3 hints per second per topic per process
MAX_IN_FLIGHT = 200  # sends waiting for the channel layer (Redis slow or gone): drop beyond this
ERROR_LOG_EVERY_S = 30.0


def group_name(topic: str) -> str:
    """The channel-layer group of a topic ("stream:<id>" -> "live.stream.<id>")."""
    return "live." + topic.replace(":", ".")


class _Sender:
    """One event loop in a daemon thread, owned by one process."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.last_sent: dict[str, float] = {}
        self.pending: set[str] = set()  # topics with a trailing send scheduled (read by callers too)
        self.in_flight = 0
        self.unchecked: list[str] = []  # stream topics to look up among the watched ones, then send
        self.last_error_log = 0.0
        self.layer: Any = None
        self.thread = threading.Thread(target=self._run, name="console-live-hints", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def submit(self, topic: str) -> None:
        """Any thread: hand a topic to the loop (cheap: skipped when a send is already pending)."""
        if topic in self.pending:
            return
        self.loop.call_soon_threadsafe(self._receive, topic)

    def stop(self) -> None:
        """End the loop and its thread (tests; a process simply exits)."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)

    # -- on the loop's thread --------------------------------------------------
    def _receive(self, topic: str) -> None:
        if topic in self.pending:
            return
        wait = self.last_sent.get(topic, float("-inf")) + MIN_INTERVAL_S - time.monotonic()
        if wait <= 0:
            self._send(topic)
        else:
            self.pending.add(topic)
            self.loop.call_later(wait, self._flush, topic)

    def _flush(self, topic: str) -> None:
        self.pending.discard(topic)
        self._send(topic)

    def _send(self, topic: str) -> None:
        self.last_sent[topic] = time.monotonic()
        if len(self.last_sent) > 10_000:  # many streams over a long life: forget the quiet ones
            horizon = time.monotonic() - MIN_INTERVAL_S
            self.last_sent = {t: at for t, at in self.last_sent.items() if at > horizon}
        if self.in_flight >= MAX_IN_FLIGHT:
            self._log_error("live hints are backing up (channel layer slow?): dropping %s", topic)
            return
        self.in_flight += 1
        if topic.startswith("stream:"):
            self.unchecked.append(topic)
            if len(self.unchecked) == 1:  # those submitted meanwhile join it
                self.loop.call_soon(self._send_watched)
            return
        self.loop.create_task(self._group_send(topic))

    def _send_watched(self) -> None:
        topics, self.unchecked = self.unchecked, []
        try:
            sent = watched(topics)
        except Exception:  # cannot tell: send them all (and if Redis is away, those fail and are logged)
            sent = topics
        self.in_flight -= len(topics) - len(sent)
        for topic in sent:
            self.loop.create_task(self._group_send(topic))

    async def _group_send(self, topic: str) -> None:
        try:
            if self.layer is None:
                from channels.layers import DEFAULT_CHANNEL_LAYER, channel_layers

                # A layer of our own: the shared one may belong to another loop (or the parent process).
                self.layer = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)
            await self.layer.group_send(group_name(topic), {"type": "live.hint", "topic": topic})
        except Exception:
            self._log_error("could not send the live hint %s", topic, exc_info=True)
        finally:
            self.in_flight -= 1

    def _log_error(self, message: str, *args: object, exc_info: bool = False) -> None:
        now = time.monotonic()
        if now - self.last_error_log >= ERROR_LOG_EVERY_S:
            self.last_error_log = now
            log.warning(message, *args, exc_info=exc_info)


_sender: _Sender | None = None
_start_lock = threading.Lock()


def _forget_parent_sender() -> None:
    """In a forked child: the parent's thread did not come along (and its lock may be held)."""
    global _sender, _start_lock
    _sender = None
    _start_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_parent_sender)


def _current() -> _Sender:
    sender = _sender
    if sender is not None and sender.pid == os.getpid():
        return sender
    return _start()


def _start() -> _Sender:
    global _sender
    with _start_lock:
        if _sender is None or _sender.pid != os.getpid():  # first use, or a forked child
            _sender = _Sender()
        return _sender


def watched_key() -> str:
    from projections import flags

    return flags.key("live-watched")


def _redis() -> Any:
    from projections import flags

    return flags.client()  # the flags' client: REDIS_URL, with its timeouts


def watched(topics: list[str]) -> list[str]:
    """Those of the stream topics that some live socket watches (one round trip). Redis errors
    reach the caller."""
    counts = _redis().hmget(watched_key(), topics)
    return [topic for topic, count in zip(topics, counts, strict=True) if count and int(count) > 0]


# Add ARGV[1] to the count of each topic in ARGV[2:]; a count down to nothing is removed.
_COUNT = """
for i = 2, #ARGV do
  if redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[1]) <= 0 then redis.call('HDEL', KEYS[1], ARGV[i]) end
end
"""


def watch(topics: list[str], by: int = 1) -> None:
    """A live socket follows these topics (`by=-1`: no longer): its stream topics are counted."""
    streams = [topic for topic in topics if topic.startswith("stream:")]
    if streams:
        _redis().eval(_COUNT, 1, watched_key(), by, *streams)


def hint(topic: str) -> None:
    """Tell subscribed pages that `topic` changed. Thread-safe, non-blocking, never raises."""
    try:
        _current().submit(topic)
    except Exception:  # a hint is a courtesy: never fail the caller for it
        log.warning("could not queue the live hint %s", topic, exc_info=True)


def flush(timeout: float = 2.0) -> bool:
    """Wait until every hint queued so far has been sent (tests, and commands about to exit)."""
    sender = _sender
    if sender is None or sender.pid != os.getpid():
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = threading.Event()
        sender.loop.call_soon_threadsafe(done.set)
        done.wait(max(0.0, deadline - time.monotonic()))
        if not sender.pending and sender.in_flight == 0:
            return True
        time.sleep(0.01)
    return False
