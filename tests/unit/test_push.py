"""push.hint: coalesced per topic (never losing the last change), sent from one loop thread per
process, restarted in a forked child, never raising. The channel layer is replaced by a recorder."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from uuid import uuid4

import pytest

from app.console import push
from projections import flags


class Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.sent: list[tuple[float, str, dict]] = []
        self.fail = fail

    async def group_send(self, group: str, message: dict) -> None:
        if self.fail:
            raise ConnectionError("redis is gone")
        self.sent.append((time.monotonic(), group, message))


@pytest.fixture
def recorder(monkeypatch) -> Iterator[Recorder]:
    monkeypatch.setattr(push, "_sender", None)
    rec = Recorder()
    sender = push._current()
    sender.layer = rec
    yield rec
    sender.stop()


def test_a_burst_is_coalesced_into_one_send_now_and_one_trailing_send(recorder):
    for _ in range(1000):
        push.hint("events")
    assert push.flush(timeout=3)
    assert [(g, m) for _, g, m in recorder.sent] == [("live.events", {"type": "live.hint", "topic": "events"})] * 2
    first, last = recorder.sent[0][0], recorder.sent[1][0]
    assert last - first >= push.MIN_INTERVAL_S * 0.9  # the trailing send waited its turn


@pytest.fixture
def watching() -> Iterator[str]:
    """A stream topic one live socket watches."""
    stream = f"stream:{uuid4()}"
    push.watch([stream])
    yield stream
    push.watch([stream], -1)
    assert not flags.client().hexists(push.watched_key(), stream)  # a count down to nothing is removed


def test_topics_are_coalesced_separately_and_stream_topics_get_their_own_group(recorder, watching):
    push.hint("events")
    push.hint(watching)
    push.hint("projections")
    assert push.flush()
    groups = sorted(g for _, g, _ in recorder.sent)
    assert groups == ["live.events", "live.projections", push.group_name(watching)]


def test_a_stream_nobody_watches_is_not_hinted(recorder, watching):
    unwatched = [f"stream:{uuid4()}" for _ in range(5)]
    for topic in [*unwatched, watching]:
        push.hint(topic)
    assert push.flush()
    assert [g for _, g, _ in recorder.sent] == [push.group_name(watching)]
    assert push._current().in_flight == 0


def test_a_stream_watched_twice_is_hinted_until_both_leave(recorder, watching):
    push.watch([watching])  # a second page on the same stream
    push.watch([watching], -1)  # the first leaves
    push.hint(watching)
    assert push.flush()
    assert [g for _, g, _ in recorder.sent] == [push.group_name(watching)]


def test_when_the_watched_streams_cannot_be_read_every_stream_is_hinted(recorder, monkeypatch):
    def away(topics):
        raise ConnectionError("redis is gone")

    monkeypatch.setattr(push, "watched", away)
    push.hint(f"stream:{uuid4()}")
    assert push.flush()
    assert len(recorder.sent) == 1


def test_at_most_a_few_sends_per_second_per_topic_under_steady_load(recorder):
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        push.hint("accounts")
        time.sleep(0.002)
    assert push.flush()
    assert 3 <= len(recorder.sent) <= 1.5 / push.MIN_INTERVAL_S + 2


def test_hints_from_many_threads_share_one_sender_thread(recorder):
    senders_before = {t for t in threading.enumerate() if t.name == "console-live-hints"}
    sender = push._current()
    threads = [threading.Thread(target=lambda: [push.hint("transfers") for _ in range(200)]) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert push.flush()
    assert 1 <= len(recorder.sent) <= 2
    assert push._current() is sender
    assert {t for t in threading.enumerate() if t.name == "console-live-hints"} == senders_before


def test_a_failing_channel_layer_never_reaches_the_caller(recorder):
    recorder.fail = True
    push.hint("events")  # no exception
    assert push.flush()
    assert push._current().in_flight == 0


def test_a_forked_child_starts_its_own_sender(recorder):
    parent = push._current()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the parent's thread did not come along
        try:
            child = push._current()
            ok = child is not parent and child.pid == os.getpid() and child.thread.is_alive()
            os.write(write, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 1) == b"1"
    assert push._current() is parent
