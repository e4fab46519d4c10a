"""Failed staff logins, counted in Redis per client address, per (user name, address) and
per user name across all addresses.

The ops API's HTTP Basic login and the admin's login form call `start_attempt` before they
try a password, and `forget_attempt` after a right one. Every attempt is counted before the
password is checked, in one atomic step that also refuses it when a count is full, so
requests sent all at once cannot slip past the limit while their passwords are being
checked. The counts live in Redis, so the limit holds across every web process. A success
costs two short Redis calls and, given back, counts nothing.
"""

from __future__ import annotations

import hashlib
import logging

from django.conf import settings
from django.http import HttpRequest
from redis.exceptions import RedisError

from beamclaw.redis import get_redis, key

log = logging.getLogger(__name__)

# KEYS: the counters; ARGV: 1 window seconds, then one limit per counter. Returns 0
# (counted) or the seconds until the fullest counter's window ends (refused, counted
# nowhere: an address that is locked out must not go on filling the user's count, nor the
# other way round).
_START = """
local wait = 0
for i, counter in ipairs(KEYS) do
  if tonumber(redis.call('get', counter) or '0') >= tonumber(ARGV[i + 1]) then
    wait = math.max(wait, redis.call('ttl', counter), 1)
  end
end
if wait > 0 then return wait end
for _, counter in ipairs(KEYS) do
  redis.call('set', counter, 0, 'ex', ARGV[1], 'nx')
  redis.call('incr', counter)
end
return 0
"""
# Give an attempt back; a counter whose window has ended meanwhile stays gone.
_FORGET = """
for _, counter in ipairs(KEYS) do
  if redis.call('exists', counter) == 1 then redis.call('decr', counter) end
end
"""


class LoginLocked(Exception):
    """Too many failed logins from this address (or for this user name from anywhere, at a
    much higher count): refuse the next ones, right password or not, for `retry_after`
    seconds (the rest of the window)."""

    def __init__(self, retry_after: int):
        super().__init__(f"locked for {retry_after} s")
        self.retry_after = retry_after


def _counters(request: HttpRequest, username: str) -> list[str]:
    address = request.META.get("REMOTE_ADDR") or "unknown"
    # Hashed: the name is whatever the caller typed, of any length.
    user = hashlib.sha256(username.strip().casefold().encode()).hexdigest()[:32]
    return [
        key("login-failures", "address", address),
        key("login-failures", "user-address", user, address),
        key("login-failures", "user", user),
    ]


def _limits() -> list[int]:
    # The per-user count across all addresses only bounds a distributed guesser; at the
    # per-address limit, one stranger could lock a staff member out everywhere.
    limit = settings.LOGIN_FAILURE_LIMIT
    return [limit, limit, settings.LOGIN_FAILURE_LIMIT_PER_USER]


def start_attempt(request: HttpRequest, username: str) -> None:
    """Count a login attempt as failed until `forget_attempt` says otherwise; raise
    LoginLocked instead if this address or user name has used up its attempts."""
    redis = get_redis()
    try:
        wait = redis.register_script(_START)(
            keys=_counters(request, username),
            args=[settings.LOGIN_FAILURE_WINDOW_SECONDS, *_limits()],
        )
    except RedisError:
        # Staff must still reach the admin and ops endpoints while Redis is down.
        log.warning("login throttle unavailable: Redis did not answer")
        return
    if wait:
        raise LoginLocked(int(wait))


def forget_attempt(request: HttpRequest, username: str) -> None:
    """The password was right: this attempt does not count."""
    redis = get_redis()
    try:
        redis.register_script(_FORGET)(keys=_counters(request, username))
    except RedisError:
        log.warning("login throttle unavailable: a successful login stays counted")
