"""Template filters for numbers and durations people read at a glance: `{{ n|thousands }}` and
`{{ seconds|duration }}` ("850 ms", "4.2 s", "3 min 5 s", "2 h 4 min")."""

from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def thousands(value: object) -> str:
    """1234567 -> "1,234,567" (anything not a number is shown as it is)."""
    try:
        return f"{int(value):,}"  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return "" if value is None else str(value)


@register.filter
def duration(seconds: object) -> str:
    try:
        s = float(seconds)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "—"
    if s < 1:
        return f"{round(s * 1000)} ms"
    if s < 60:
        return f"{s:.1f} s"
    minutes, rest = divmod(round(s), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


@register.filter
def words(value: object) -> str:
    """An identifier as words: "transfer_out" -> "transfer out"."""
    return str(value or "").replace("_", " ")
