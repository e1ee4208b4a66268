"""The console's live socket: `/ws/live/?topics=events,stream:<uuid>` carries hints (`{"topic":
"events"}`), never data or HTML, so nothing rendered for one user can reach another; the page
fetches its own role-aware fragment when a hint arrives (console.js). Only logged-in users may
connect (anonymous sockets are closed); routing.py checks the Origin."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any
from urllib.parse import parse_qs

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from app.console.push import group_name, watch

log = logging.getLogger(__name__)

PLAIN_TOPICS = frozenset({"events", "projections", "accounts", "transfers"})
STREAM_TOPIC = re.compile(r"^stream:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
MAX_TOPICS = 10
UNAUTHORIZED = 4401  # an application close code: the page shows "reconnecting" and keeps trying


def topics_from(query_string: bytes) -> list[str]:
    """The known topics asked for in `?topics=a,b` (unknown ones ignored, at most MAX_TOPICS)."""
    asked = parse_qs(query_string.decode("latin-1")).get("topics", [])
    found: list[str] = []
    for part in ",".join(asked).split(","):
        topic = part.strip().lower()
        if (topic in PLAIN_TOPICS or STREAM_TOPIC.match(topic)) and topic not in found:
            found.append(topic)
    return found[:MAX_TOPICS]


class LiveConsumer(AsyncJsonWebsocketConsumer):
    groups_joined: list[str]
    watching: list[str]

    async def connect(self) -> None:
        self.groups_joined, self.watching = [], []
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=UNAUTHORIZED)
            return
        topics = topics_from(self.scope.get("query_string", b""))
        for topic in topics:
            group = group_name(topic)
            await self.channel_layer.group_add(group, self.channel_name)
            self.groups_joined.append(group)
        streams = [topic for topic in topics if topic.startswith("stream:")]
        try:  # before accepting: the page fetches once it is connected, and hears of what follows
            if streams:
                await asyncio.to_thread(watch, streams)
            self.watching = streams
        except Exception:  # Redis away: the channel layer is too, and the page shows "reconnecting"
            log.warning("could not count the live socket's stream topics", exc_info=True)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)
        if getattr(self, "watching", None):
            try:
                await asyncio.to_thread(watch, self.watching, -1)
            except Exception:
                log.warning("could not uncount the live socket's stream topics", exc_info=True)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        """The page has nothing to say: whatever it sends is ignored (not even parsed)."""

    async def live_hint(self, message: dict[str, Any]) -> None:
        await self.send_json({"topic": message["topic"]})
