"""The session lease: one turn at a time per session, on any worker.

Redis holds the lease (`SET NX PX`, renewed by one keeper thread per process); the
database holds the fencing token (`Session.fence`, bumped when a worker claims the
session). Redis is the fast path and keeps nothing on disk here; the token lives in the
database so a Redis restart can never hand out an old token again.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid

from django.conf import settings
from django.db import connection

from beamclaw.redis import get_redis, key, lua_script

log = logging.getLogger(__name__)

# Renews the lease and, when the session holds a tenant concurrency slot (KEYS[2]),
# that slot's expiry too: both die with the worker, both live while it runs. A lease
# that vanished (Redis restarted, it keeps nothing) is taken back; one held by another
# worker means ours is lost.
_RENEW = """
local holder = redis.call('get', KEYS[1])
if holder and holder ~= ARGV[1] then
  return 0
end
redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
if KEYS[2] then
  local t = redis.call('time')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('zadd', KEYS[2], now + tonumber(ARGV[2]), ARGV[3])
end
return 1
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""

WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"


class LeaseLost(Exception):
    """Another worker owns the session now; this one must stop without writing."""


def lease_key(tenant_id: int, session_id: int) -> str:
    return key("t", tenant_id, "lease", session_id)


class Lease:
    def __init__(self, tenant_id: int, session_id: int):
        self.session_id = session_id
        self.key = lease_key(tenant_id, session_id)
        self.owner = f"{WORKER_ID}:{uuid.uuid4().hex[:12]}"
        self.fence = 0
        self.lost = threading.Event()
        # The tenant's slot set while this session holds a concurrency slot.
        self.slot_key: str | None = None
        # The keeper renews from its own thread: a renewal landing just after our release
        # would take the freed lease back (as after a Redis restart) for a whole TTL, and
        # the session's next trigger would find it taken. Released is final.
        self._guard = threading.Lock()
        self._released = False

    def acquire(self) -> bool:
        ttl_ms = int(settings.TURN_LEASE_SECONDS * 1000)
        if not get_redis().set(self.key, self.owner, nx=True, px=ttl_ms):
            return False
        self.fence = claim_fence(self.session_id)
        keeper.track(self)
        return True

    def renew(self) -> bool:
        ttl_ms = int(settings.TURN_LEASE_SECONDS * 1000)
        keys = [self.key, self.slot_key] if self.slot_key else [self.key]
        with self._guard:
            if self._released:
                return True  # nothing to keep; not lost either
            renew = lua_script(get_redis(), _RENEW)
            return bool(renew(keys=keys, args=[self.owner, ttl_ms, self.session_id]))

    def release(self) -> None:
        keeper.forget(self)
        with self._guard:
            self._released = True
            try:
                lua_script(get_redis(), _RELEASE)(keys=[self.key], args=[self.owner])
            except Exception:  # it expires on its own; the fence keeps us safe either way
                log.warning("could not release lease %s", self.key, exc_info=True)

    def check(self) -> None:
        if self.lost.is_set():
            raise LeaseLost(f"lease on session {self.session_id} lost")


def claim_fence(session_id: int) -> int:
    """Take a new fencing token for the session: every older holder is fenced off."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE agents_session SET fence = fence + 1 WHERE id = %s RETURNING fence",
            [session_id],
        )
        return cursor.fetchone()[0]


class LeaseKeeper:
    """One thread per process renews every lease this process holds."""

    def __init__(self) -> None:
        self._leases: dict[str, Lease] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()

    def track(self, lease: Lease) -> None:
        with self._lock:
            self._leases[lease.owner] = lease
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)
                self._thread.start()

    def forget(self, lease: Lease) -> None:
        with self._lock:
            self._leases.pop(lease.owner, None)

    def held(self) -> list[Lease]:
        """The leases this process holds, which the keeper renews until they are released."""
        with self._lock:
            return list(self._leases.values())

    def renew_all(self) -> None:
        for lease in self.held():
            try:
                if not lease.renew():
                    lease.lost.set()
                    self.forget(lease)
            except Exception:  # Redis down: keep going; the fence arbitrates
                log.warning("lease renewal failed for %s", lease.key, exc_info=True)

    def _run(self) -> None:
        while True:
            self._wake.wait(settings.TURN_LEASE_RENEW_SECONDS)
            self._wake.clear()
            self.renew_all()


keeper = LeaseKeeper()
