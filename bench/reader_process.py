"""A system's reader in a process of its own (W4 and P1's raw reference read the log through it)."""

from __future__ import annotations

import multiprocessing as mp
import time
from typing import Any

import django

from bench import common
from bench.systems import READERS


class ReaderProcess:
    """A system's reader in a fresh process of its own, reading pages when asked.

    Python's garbage collector walks every live object of the process, and the raw reader
    (which leaves it on, as a plain client would) would otherwise pay for whatever the
    benchmark itself holds: more in its later runs than in its first.
    """

    def __init__(self, system: str) -> None:
        ctx = mp.get_context("spawn")
        self.pipe, child = ctx.Pipe()
        self.proc = ctx.Process(target=_reader_loop, args=(system, child))
        self.proc.start()

    def read(self, pages: int | None) -> tuple[int, float]:
        """(events read, seconds) for up to `pages` more pages (None: to the end)."""
        self.pipe.send(("read", pages))
        return self._reply()

    def rewind(self) -> None:
        self.pipe.send(("rewind", None))
        self._reply()

    def _reply(self) -> Any:
        if not self.pipe.poll(600):
            raise RuntimeError("a reader process did not answer within 10 minutes")
        reply = self.pipe.recv()
        if isinstance(reply, str):
            raise RuntimeError(f"a reader process failed: {reply}")
        return reply

    def close(self) -> None:
        if self.proc.is_alive():
            self.pipe.send(("stop", None))
        self.proc.join(timeout=60)


def _reader_loop(system: str, pipe: Any) -> None:
    django.setup()
    with common.scratch():
        reader = READERS[system]()
        try:
            while (request := pipe.recv())[0] != "stop":
                op, pages = request
                try:
                    if op == "rewind":
                        reader.rewind()
                        pipe.send(None)
                    else:
                        start = time.perf_counter()
                        count = reader.read(limit_pages=pages)
                        pipe.send((count, time.perf_counter() - start))
                except Exception as exc:
                    pipe.send(repr(exc))
                    raise
        finally:
            reader.close()


def timed_read(system: str, events: int, what: str) -> float:
    """Seconds to read the whole scratch log (`events` of them) with one system's reader, after
    a warm-up of 10 % on the same connection."""
    reader = ReaderProcess(system)
    try:
        reader.read(max(1, events // 10_000))
        reader.rewind()
        count, elapsed = reader.read(None)
    finally:
        reader.close()
    if count != events:
        raise RuntimeError(f"{what} {system} read {count} of {events} events")
    return elapsed
