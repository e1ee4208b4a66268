"""The request headers a command keeps or acts on, parsed once at the edge (the API and the
console): `If-Match` into a stream version, `Idempotency-Key` and `X-Request-ID` into bounded
text. `X-Request-ID` is stored in the metadata of every event the command appends, for ever, so
it is held to a short run of visible ASCII; the others must fit their columns.
"""

from __future__ import annotations

import re

from eventstore.inputs import MAX_INT, parse_int

REQUEST_ID_MAX = 128
IDEMPOTENCY_KEY_MAX = 255  # core_processedcommand.key
_REQUEST_ID = re.compile(rf"[\x21-\x7e]{{1,{REQUEST_ID_MAX}}}")  # visible ASCII: no spaces, no controls
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class BadHeader(ValueError):
    """A header that is not what its name says: `header` names it, the message says why."""

    def __init__(self, header: str, problem: str) -> None:
        super().__init__(problem)
        self.header = header


def expected_version(raw: str | None) -> int | None:
    """If-Match: `"3"`, `W/"3"` or `3` is version 3; absent or `*` is no check."""
    if raw is None or raw.strip() == "*":
        return None
    value = raw.strip().removeprefix("W/").strip('"')
    try:
        return parse_int(value, maximum=MAX_INT)
    except ValueError:
        raise BadHeader("If-Match", 'not a stream version, e.g. "3"') from None


def idempotency_key(raw: str | None) -> str | None:
    """Idempotency-Key: 1 to 255 characters, none of them a control character."""
    if raw is None:
        return None
    if not 1 <= len(raw) <= IDEMPOTENCY_KEY_MAX:
        raise BadHeader("Idempotency-Key", f"1 to {IDEMPOTENCY_KEY_MAX} characters")
    if _CONTROL.search(raw):
        raise BadHeader("Idempotency-Key", "no control characters")
    return raw


def request_id(raw: str | None) -> str | None:
    """X-Request-ID: 1 to 128 visible ASCII characters (letters, digits, punctuation; no spaces)."""
    if raw is None:
        return None
    if not _REQUEST_ID.fullmatch(raw):
        raise BadHeader("X-Request-ID", f"1 to {REQUEST_ID_MAX} visible ASCII characters, no spaces")
    return raw


def request_id_or_none(raw: str | None) -> str | None:
    """The request id if it is a good one, else none at all: for the console, whose users do not
    choose the headers their browser or proxy sends, and should not be refused for them."""
    try:
        return request_id(raw)
    except BadHeader:
        return None
