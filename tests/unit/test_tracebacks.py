"""projections.tracebacks: a traceback as Python prints it, minus every message and note."""

from __future__ import annotations

import pytest

from projections.tracebacks import HEADER, WITHHELD, redacted, shown

PERSONAL = "Ann Example"


class LedgerError(Exception):
    pass


def handler(owner: str) -> None:
    try:
        {}[owner]
    except KeyError as exc:
        raise LedgerError(f"no row for {owner}") from exc


def caught(fn, *args) -> BaseException:
    with pytest.raises(BaseException) as info:
        fn(*args)
    return info.value


def test_the_chain_and_the_frames_are_kept_and_no_message_or_note():
    exc = caught(handler, PERSONAL)
    exc.add_note(f"owner: {PERSONAL}")
    text = redacted(exc)
    assert text.startswith(HEADER) and text.count(HEADER) == 2
    first, second = text.split("The above exception was the direct cause of the following exception:")
    assert first.rstrip().endswith("\nKeyError")  # the cause first, as Python prints it
    assert second.rstrip().endswith(f"\n{__name__}.LedgerError")
    assert "in handler" in second and 'raise LedgerError(f"no row for {owner}")' in second  # frame and source line
    assert PERSONAL not in text and "LedgerError:" not in text and "KeyError:" not in text


def test_an_implicit_context_is_followed_unless_suppressed():
    def implicit() -> None:
        try:
            raise ValueError(PERSONAL)
        except ValueError:
            raise TypeError(PERSONAL)  # noqa: B904

    def suppressed() -> None:
        try:
            raise ValueError(PERSONAL)
        except ValueError:
            raise TypeError(PERSONAL) from None

    assert "another exception occurred" in redacted(caught(implicit))
    text = redacted(caught(suppressed))
    assert text.count(HEADER) == 1 and text.rstrip().endswith("\nTypeError") and PERSONAL not in text


def test_exception_groups_show_each_sub_exception_without_messages():
    def group() -> None:
        raise ExceptionGroup(PERSONAL, [ValueError(PERSONAL), caught(handler, PERSONAL)])

    text = redacted(caught(group))
    assert "ExceptionGroup" in text and "ValueError" in text and "LedgerError" in text and "KeyError" in text
    assert PERSONAL not in text


def test_only_redacted_text_is_shown():
    text = redacted(caught(handler, PERSONAL))
    assert shown(text) == text and shown("") == ""
    assert shown(f"Traceback (most recent call last):\nValueError: {PERSONAL}\n") == WITHHELD
