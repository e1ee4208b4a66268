"""`manage.py export_events`' progress bar: drawn on stderr when stderr is a terminal (here a real
pseudo-terminal), redrawn as the pages go by and left full on its own line at the end; nothing of
it when stderr is not a terminal or with `--no-progress`."""

from __future__ import annotations

import functools
import io
import os
import pty
import re
import sys
from uuid import uuid4

import pytest
from django.core.management import call_command

from eventstore import backup
from eventstore.management.commands import export_events
from eventstore.store import EventStore
from tests.support import Added, Opened

FRAME = re.compile(r"\rexport \[([#.]{30})\] ([\d,]+)/([\d,]+) [\d,]+/s")


@pytest.fixture
def small_pages(transactional_db, monkeypatch):
    """A log of more than a few pages: the bar is redrawn after every page, at once."""
    EventStore().append(uuid4(), "progress", [Opened(name="p"), *(Added(amount=i) for i in range(1, 150))])
    monkeypatch.setattr(export_events, "export_log", functools.partial(backup.export_log, page=50))
    monkeypatch.setattr(backup, "PROGRESS_EVERY_S", 0.0)


def export(tmp_path, stderr, *args: str) -> int:
    """Run the command with `stderr` as the process's stderr; the number of events it exported."""
    out = io.StringIO()
    saved = sys.stderr
    sys.stderr = stderr
    try:
        call_command("export_events", str(tmp_path / f"{uuid4().hex}.jsonl"), *args, stdout=out)
    finally:
        sys.stderr = saved
    found = re.match(r"exported ([\d,]+) events", out.getvalue())
    assert found, out.getvalue()
    return int(found[1].replace(",", ""))


def on_a_terminal(tmp_path, *args: str) -> tuple[int, str]:
    """The command with stderr on a pseudo-terminal; what the terminal received."""
    master, slave = pty.openpty()
    terminal = os.fdopen(slave, "w")
    assert terminal.isatty()
    try:
        exported = export(tmp_path, terminal, *args)
    finally:
        terminal.close()
    received = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the terminal's other side is closed and everything was read
            break
        if not chunk:
            break
        received += chunk
    os.close(master)
    return exported, received.decode().replace("\r\n", "\n")  # the terminal's own newline translation


def test_the_bar_is_drawn_on_a_terminal_and_ends_full(small_pages, tmp_path):
    exported, shown = on_a_terminal(tmp_path)
    frames = [
        (bar, int(done.replace(",", "")), int(total.replace(",", ""))) for bar, done, total in FRAME.findall(shown)
    ]
    assert len(frames) >= 3, shown[-500:]  # redrawn page after page, then once more at the end
    done = [d for _, d, _ in frames]
    assert done == sorted(done) and done[0] < exported, done
    bar, last, total = frames[-1]
    assert (bar, last, total) == ("#" * 30, exported, exported), frames[-1]
    assert shown.endswith("\n") and shown.count("\n") == 1  # one line, redrawn in place, ended once


def test_the_end_is_drawn_even_when_no_page_was(small_pages, tmp_path, monkeypatch):
    monkeypatch.setattr(backup, "PROGRESS_EVERY_S", 3600.0)  # redrawn at most once an hour: never, by the pages
    exported, shown = on_a_terminal(tmp_path)
    assert FRAME.findall(shown) == [("#" * 30, f"{exported:,}", f"{exported:,}")] and shown.endswith("\n"), shown


def test_no_bar_when_stderr_is_not_a_terminal(small_pages, tmp_path):
    piped = io.StringIO()  # what a pipe or a file gives: isatty() is False
    assert export(tmp_path, piped) > 0
    assert "export [" not in piped.getvalue()


def test_no_bar_on_a_terminal_with_no_progress(small_pages, tmp_path):
    exported, shown = on_a_terminal(tmp_path, "--no-progress")
    assert exported > 0 and shown == ""
