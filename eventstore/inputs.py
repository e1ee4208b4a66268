"""Numbers and text from outside (request parameters, headers, cursors, command fields), checked
against what PostgreSQL can hold before anything reaches it. Pure Python: the API, the console,
the ledger's event types and the store's own cursors share these, so each rule is written once.

Numbers: ASCII digits only, and bounded. Python's `int()` also takes "١٢" (Arabic-Indic digits),
"1_000", " 12" and "+5", and `str.isdigit()` says yes to "²", which `int()` then refuses; a
number past a column's range fails in the database instead of at the edge. So every number
parsed from text goes through `parse_int` with the bound of the column it ends up in.

Text: PostgreSQL's text and jsonb cannot hold a NUL character, and UTF-8 cannot encode a lone
surrogate (which JSON's "\\ud800" escape produces); either fails deep in a statement, or, sealed
inside encrypted personal data, later in a projection. `text_problem` names what is wrong.

History is another matter: an event already in the log is a fact, and reading it must never fail
on a rule added after it was written. Validators of event types relax for data read from the log
(`from_history`), which the registry decodes with the `HISTORY` context.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

MAX_INT = 2**31 - 1  # PostgreSQL's integer: stream versions
MAX_BIGINT = 2**63 - 1  # bigint: positions, amounts
MAX_XID8 = 2**64 - 1  # xid8: transaction ids in cursors

_DIGITS = re.compile(r"[0-9]{1,20}", re.ASCII)  # 20 digits hold any 64-bit number; more never fit
_NOT_STORABLE = re.compile(r"[\x00\ud800-\udfff]")

# The validation context of events read from the log (see `from_history`).
HISTORY: Mapping[str, Any] = MappingProxyType({"eventfold_history": True})


def parse_int(text: str, *, maximum: int, minimum: int = 0) -> int:
    """`text` as a number if it is 1 to 20 ASCII digits from `minimum` to `maximum`; else ValueError."""
    if not isinstance(text, str) or not _DIGITS.fullmatch(text):
        raise ValueError("not a number: only the digits 0-9")
    value = int(text)
    if not minimum <= value <= maximum:
        raise ValueError(f"out of range: {minimum} to {maximum}")
    return value


def text_problem(text: str) -> str | None:
    """What keeps `text` out of PostgreSQL, or None when it can be stored."""
    found = _NOT_STORABLE.search(text)
    if found is None:
        return None
    return "contains a NUL character" if found.group() == "\x00" else "contains an unpaired surrogate"


def storable(text: str) -> str:
    """`text` itself, if PostgreSQL can store it; else ValueError naming why (for validators)."""
    problem = text_problem(text)
    if problem is not None:
        raise ValueError(problem)
    return text


def from_history(context: Any) -> bool:
    """Whether a validator runs on data read back from the log (the registry's `HISTORY` context)."""
    return isinstance(context, Mapping) and bool(context.get("eventfold_history"))
