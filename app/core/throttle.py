"""The login throttle: django-axes, hooked into Django's authenticate(), so every password login
(the console's /login/, and anything else that checks a password) is counted and refused alike.

- Failures count per username and client address (LOGIN_MAX_FAILURES): a stranger guessing from
  elsewhere cannot lock a user out, and a lock ends LOGIN_COOLOFF_S after it began.
- And per address across usernames (LOGIN_MAX_FAILURES_PER_ADDRESS), so one address cannot try a
  few passwords on each of many users.
- The username is the one the login looks up: Django's form normalises it (NFKC, surrounding
  spaces stripped), so a fullwidth "admin" logs in as "admin" and must count as "admin"; case is folded
  too, so no spelling of a name gets fresh tries.
- The client address is the connection's, unless that is a proxy named in TRUSTED_PROXIES: then
  the right-most X-Forwarded-For entry that is not a trusted proxy (the address the first trusted
  proxy saw). Anything further left was written by the client and proves nothing. uvicorn's
  command line (app/stack.py) trusts the same proxies, so both resolve the same address. IPv6
  addresses count per /64, the block one client usually holds.
"""

from __future__ import annotations

import ipaddress
import unicodedata
from datetime import timedelta
from functools import lru_cache
from typing import Any

from axes.backends import AxesStandaloneBackend
from axes.handlers.cache import AxesCacheHandler
from axes.helpers import make_cache_key_list
from django.conf import settings
from django.http import HttpRequest

from app.core import metrics

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def normalise(username: str) -> str:
    """A username as Django's login form cleans it (NFKC, stripped), then case-folded."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", username.strip()).casefold())


def login_username(request: HttpRequest, credentials: dict[str, Any] | None = None) -> str | None:
    """The username a login counts against (settings.AXES_USERNAME_CALLABLE)."""
    raw = (credentials or {}).get("username")
    if raw is None:
        raw = request.POST.get("username") if request is not None else None
    return None if raw is None else normalise(str(raw))


@lru_cache(maxsize=8)
def _networks(trusted: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in trusted)


def is_trusted_proxy(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in network for network in _networks(tuple(settings.TRUSTED_PROXIES)))


def counted(address: str) -> str:
    """The address failures count against. An IPv6 client usually holds a whole /64 and can pick
    a fresh address in it for every try, so IPv6 counts per /64; an IPv4-mapped one as IPv4."""
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def client_address(request: HttpRequest) -> str:
    """The client's address as counted: the connection's, or behind trusted proxies the address
    the first of them saw (the right-most X-Forwarded-For entry that is not a trusted proxy)."""
    remote = request.META.get("REMOTE_ADDR") or ""
    if not is_trusted_proxy(remote):
        return counted(remote)
    hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
    for hop in reversed(hops):
        if not is_trusted_proxy(hop):
            return counted(hop)
    return counted(hops[0] if hops else remote)  # only proxies all the way: the furthest one


def failure_limit(request: HttpRequest | None, credentials: dict[str, Any] | None) -> int:
    """Failures per username and address before the lock (read per request: tests change it)."""
    return settings.LOGIN_MAX_FAILURES


def cool_off(request: HttpRequest | None = None) -> timedelta:
    return timedelta(seconds=settings.LOGIN_COOLOFF_S)


def address_key(address: str) -> str:
    """The cache key of an address's failures: axes' own for a lock by address alone, so that
    `manage.py axes_reset_ip` lifts it."""
    return str(make_cache_key_list([{"ip_address": address}])[0])


class LoginThrottle(AxesCacheHandler):
    """Axes' cache handler (per username and address), plus a limit per address across usernames.
    Tries refused during a lock are not counted, so a lock ends on time."""

    def is_locked(self, request: HttpRequest, credentials: dict[str, Any] | None = None) -> bool:
        if super().is_locked(request, credentials):
            return True
        failures = int(self.cache.get(address_key(request.axes_ip_address), 0))  # type: ignore[attr-defined]
        return failures >= settings.LOGIN_MAX_FAILURES_PER_ADDRESS

    def user_login_failed(
        self, sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
    ) -> None:
        refused = request is not None and getattr(request, "axes_locked_out", False)
        metrics.LOGIN_FAILURES.labels("locked_out" if refused else "credentials").inc()
        super().user_login_failed(sender, credentials, request, **kwargs)
        if request is None or refused:
            return
        locked = getattr(request, "axes_locked_out", False)  # this failure began the lock per username and address
        if locked:
            metrics.LOGIN_LOCKOUTS.inc()
        if self.is_whitelisted(request, credentials):
            return
        key = address_key(request.axes_ip_address)  # type: ignore[attr-defined]
        added = self.cache.add(key, 1, timeout=settings.LOGIN_COOLOFF_S)
        count = 1 if added else self.cache.incr(key)
        if not added:
            self.cache.touch(key, timeout=settings.LOGIN_COOLOFF_S)
        if count >= settings.LOGIN_MAX_FAILURES_PER_ADDRESS:
            if not locked:
                metrics.LOGIN_LOCKOUTS.inc()
            request.axes_locked_out = True  # type: ignore[attr-defined]
            request.axes_credentials = credentials  # type: ignore[attr-defined]

    def reset_attempts(
        self, *, ip_address: str | None = None, username: str | None = None, ip_or_username: bool = False
    ) -> int:
        """`manage.py axes_reset_ip ADDRESS` and `axes_reset_ip_username ADDRESS USERNAME` (any
        spelling of the name): the address's own count goes too, or the user would stay locked."""
        name = normalise(username) if username is not None else None
        ip_address = counted(ip_address) if ip_address is not None else None
        count = int(super().reset_attempts(ip_address=ip_address, username=name, ip_or_username=ip_or_username))
        if ip_address is not None and self.cache.delete(address_key(ip_address)):
            count += 1
        return count


class ThrottleBackend(AxesStandaloneBackend):
    """Refuses a locked-out login before its password is hashed. A call without a request (a
    management command, a test's Client.login) has no client to count and is let through to the
    password check: every HTTP login passes its request (Django's login and admin forms do)."""

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> None:
        if request is None:
            return None
        return super().authenticate(request, username, password, **kwargs)
