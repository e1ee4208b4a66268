"""How a process that cannot start says so: one sentence a person can act on, not a traceback.
`make run` checks its port before it starts anything; every process (manage.py, uvicorn, a Celery
worker or beat) stops on a missing or bad production setting naming the variable and how to make
a value (`SettingError`, raised by app/settings.py, printed by `excepthook`)."""

from __future__ import annotations

import errno
import math
import os
import socket
import sys
from types import TracebackType
from typing import Literal, overload

from django.core.exceptions import ImproperlyConfigured


class SettingError(ImproperlyConfigured):
    """A setting the process cannot start without is missing or wrong; the message says which
    and how to make a value."""


@overload
def number(name: str, default: int, *, least: int = 0, whole: Literal[True] = True) -> int: ...
@overload
def number(name: str, default: float, *, least: int = 0, whole: Literal[False]) -> float: ...
def number(name: str, default: float, *, least: int = 0, whole: bool = True) -> int | float:
    """The environment variable `name` as a number of at least `least` (a whole one unless `whole`
    is False), or `default` when it is unset or blank; anything else (text, a negative, nan) stops
    the process with one sentence naming the variable, instead of a traceback from int()."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    value: int | float | None
    try:
        value = int(raw) if whole else float(raw)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or value < least:
        kind = "a whole number" if whole else "a number"
        raise SettingError(
            f"{name}={raw!r} is not {kind} of {least} or more: set {name} to one (its default is {default}) "
            f"or leave it unset."
        )
    return value


def excepthook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    """A SettingError that stops the process is its sentence alone; anything else as ever."""
    if isinstance(exc, SettingError):
        print(f"Eventfold cannot start: {exc}", file=sys.stderr)
        return
    sys.__excepthook__(kind, exc, tb)


def port_problem(host: str, port: str) -> str | None:
    """Why the web server could not listen on host:port (a sentence), or None if it can."""
    try:
        number = int(port)
    except ValueError:
        return f"PORT={port!r} is not a port number: set PORT to a number such as 8000."
    if not 0 < number < 65536:
        return f"PORT={number} is not a port number: set PORT to a number from 1 to 65535."
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            sock.bind((host, number))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return (
                    f"Port {number} is taken: another program (perhaps another `make run`) listens on "
                    f"{host}:{number}. Stop it, or start on another port: PORT={number + 1} make run"
                )
            return f"Cannot listen on {host}:{number} ({exc.strerror}): set PORT to another port."
    return None


def explain(exc: BaseException) -> str:
    """A start-up failure as one sentence (the embedded services', say)."""
    text = str(exc).strip() or type(exc).__name__
    return text[0].upper() + text[1:] + ("" if text.endswith(".") else ".")
