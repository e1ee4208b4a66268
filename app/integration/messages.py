"""What the inbox handles: a message as it arrived, what its handler knows of it, and the
refusal that parks it (app/integration/inbox.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID


@dataclass(frozen=True)
class Received:
    """A message as it arrived, whatever the transport (or as a dead letter kept it)."""

    message_id: str | None
    routing_key: str
    headers: Mapping[str, Any]
    body: bytes
    correlation_id: str | None = None
    truncated: bool = False  # the body was cut to INBOX_MAX_BODY_BYTES (a dead letter's)

    @property
    def type(self) -> str:
        given = self.headers.get("type")
        return given if isinstance(given, str) and given else self.routing_key


@dataclass(frozen=True)
class Delivery:
    """What a handler knows of a message beside its body: the command id to send its command
    with (derived from the message id) and the correlation id its events carry."""

    message_id: str
    command_id: UUID
    correlation_id: UUID | None


class Refused(Exception):
    """The message cannot be handled as it is, and trying again will not change that: it is
    parked at once. `reason` is a short code; `detail` quotes nothing of the message's content."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


class Busy(Exception):
    """The message cannot be handled now, through no fault of its own (the read models are too
    far behind, say): it goes back to the queue, is not counted as a try, and is never parked."""
