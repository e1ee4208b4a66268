"""`{{ time|ago }}`: how long ago, as people say it ("just now", "42 s ago", "3 minutes ago"),
where Django's `timesince` says "0 minutes" for anything under a minute."""

from __future__ import annotations

from datetime import datetime

from django import template
from django.utils import timezone
from django.utils.timesince import timesince

register = template.Library()


@register.filter
def ago(value: datetime | None) -> str:
    if not isinstance(value, datetime):
        return "—"
    seconds = (timezone.now() - value).total_seconds()
    if seconds < 5:
        return "just now"
    if seconds < 60:
        return f"{int(seconds)} s ago"
    return f"{timesince(value, depth=1)} ago"
