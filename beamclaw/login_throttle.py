"""Failed staff logins, counted in Redis per client address and per user name.

The ops API's HTTP Basic login and the admin's login form ask `check` before they try a
password and call `record_failure` after a wrong one. The counts live in Redis, so a
password guesser is stopped across every web process, not just the one it happened to
reach. A success costs one read and counts nothing.
"""

from __future__ import annotations

import hashlib
import logging

from django.conf import settings
from django.http import HttpRequest
from redis.exceptions import RedisError

from beamclaw.redis import get_redis, key

log = logging.getLogger(__name__)


class LoginLocked(Exception):
    """Too many failed logins from this address or for this user name: refuse the next
    ones, right password or not, for `retry_after` seconds (the rest of the window)."""

    def __init__(self, retry_after: int):
        super().__init__(f"locked for {retry_after} s")
        self.retry_after = retry_after


def _keys(request: HttpRequest, username: str) -> list[str]:
    address = request.META.get("REMOTE_ADDR") or "unknown"
    # Hashed: the name is whatever the caller typed, of any length.
    user = hashlib.sha256(username.strip().casefold().encode()).hexdigest()[:32]
    return [key("login-failures", "address", address), key("login-failures", "user", user)]


def check(request: HttpRequest, username: str) -> None:
    """Raise LoginLocked if this address or this user name has failed too often lately."""
    keys = _keys(request, username)
    redis = get_redis()
    try:
        counts = redis.mget(keys)
        locked = [
            k
            for k, count in zip(keys, counts, strict=True)
            if int(count or 0) >= settings.LOGIN_FAILURE_LIMIT
        ]
        if not locked:
            return
        remaining = max(redis.ttl(k) for k in locked)
    except RedisError:
        # Staff must still reach the admin and ops endpoints while Redis is down.
        log.warning("login throttle unavailable: Redis did not answer")
        return
    raise LoginLocked(remaining if remaining > 0 else settings.LOGIN_FAILURE_WINDOW_SECONDS)


def record_failure(request: HttpRequest, username: str) -> None:
    """Count a wrong password (or unknown user) against the address and the user name."""
    pipe = get_redis().pipeline(transaction=True)
    for counter in _keys(request, username):
        # The window starts at the first failure and is not extended by later ones.
        pipe.set(counter, 0, ex=settings.LOGIN_FAILURE_WINDOW_SECONDS, nx=True)
        pipe.incr(counter)
    try:
        pipe.execute()
    except RedisError:
        log.warning("login throttle unavailable: a failed login was not counted")
