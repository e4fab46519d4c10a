"""The event streams and `wait` requests a web process holds open: admission and endings.

A client that would hold a stream open is admitted against two caps: its tenant's
`max_concurrent_streams`, counted in Redis across every web process (tenants.stream_slots),
and this process's STREAMS_PER_PROCESS_MAX, which keeps the open streams within the
process's Redis connection pool. One watcher task per process renews the tenant slots'
leases and re-checks the callers' API keys every few seconds: a stream whose key was
revoked, or whose tenant was suspended, since it opened is ended with the reason.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
import weakref
from dataclasses import dataclass, field

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from redis.exceptions import RedisError

from beamclaw.errors import RateLimited, Unavailable
from tenants import selectors, stream_slots
from tenants.api.auth import TenantPrincipal

log = logging.getLogger(__name__)

# The messages of the auth errors a new request with the same key would get.
ACCESS_ENDINGS = {
    "api_key_revoked": "The API key of this stream has been revoked.",
    "tenant_suspended": "This tenant is suspended.",
}
# An admitted stream whose response never started (the client left first) gives its slot
# back after this.
UNSTARTED_GRACE_SECONDS = 60.0


class EventsUnavailable(Unavailable):
    """Redis could not be asked for a slot: no live events can be served now."""

    def __init__(self) -> None:
        super().__init__(
            "events_unavailable",
            "Live events are unavailable right now; retry shortly.",
            retry_after=settings.STREAM_RETRY_AFTER_SECONDS,
        )


@dataclass(frozen=True)
class Ending:
    """Why the server ended a stream: sent to the client as its last event."""

    code: str
    message: str


@dataclass(eq=False)
class OpenStream:
    """One admitted client: its tenant slot and how the server tells it to stop."""

    tenant_id: int
    api_key_id: int
    lease: str
    admitted_at: float = field(default_factory=time.monotonic)
    started: bool = False
    ending: Ending | None = None
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    def end(self, ending: Ending) -> None:
        if self.ending is None:
            self.ending = ending
            self.ended.set()


class OpenStreams:
    """The streams open on one event loop (a web process), and the task that watches them."""

    def __init__(self) -> None:
        self._streams: set[OpenStream] = set()
        self._admitting = 0  # admissions waiting on Redis: they count against the cap too
        self._watcher: asyncio.Task | None = None

    def __len__(self) -> int:
        return len(self._streams)

    async def admit(self, principal: TenantPrincipal, *, started: bool = True) -> OpenStream:
        """A slot for one more stream of the caller's tenant, or a DomainError saying why not.

        `started=False` for a stream whose response has yet to begin: it is given back by
        the watcher if the response never starts.
        """
        # Each open stream holds one connection of the streams' Redis pool: never admit
        # more than it has, whatever the two settings say.
        cap = min(settings.STREAMS_PER_PROCESS_MAX, settings.REDIS_ASYNC_MAX_CONNECTIONS)
        if len(self._streams) + self._admitting >= cap:
            raise Unavailable(
                "service_busy",
                "This server has as many open streams as it can hold; retry shortly.",
                retry_after=settings.STREAM_RETRY_AFTER_SECONDS,
            )
        tenant = principal.tenant
        stream = OpenStream(tenant.pk, principal.api_key.pk, uuid.uuid4().hex, started=started)
        self._admitting += 1
        try:
            taken = await stream_slots.acquire(tenant, stream.lease)
        except RedisError as error:
            log.warning("no stream slot for tenant %s: %s", tenant.slug, error)
            raise EventsUnavailable() from error
        finally:
            self._admitting -= 1
        if not taken:
            raise RateLimited(
                "too_many_streams",
                f"Your tenant has {tenant.max_concurrent_streams} event streams and waiting "
                "requests open, its limit; close one or retry later.",
                details={"limit": tenant.max_concurrent_streams},
                retry_after=settings.STREAM_RETRY_AFTER_SECONDS,
            )
        self._streams.add(stream)
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.create_task(self._watch(), name="open-streams-watcher")
        return stream

    async def release(self, stream: OpenStream) -> None:
        """Give the stream's slot back (its lease expires anyway if Redis is away)."""
        if stream not in self._streams:
            return
        self._streams.discard(stream)
        watcher = self._watcher
        if not self._streams and watcher is not None and watcher is not asyncio.current_task():
            watcher.cancel()  # nothing to watch; the next admission starts another
            self._watcher = None
        try:
            await stream_slots.release(stream.tenant_id, stream.lease)
        except RedisError as error:
            log.warning("stream slot of tenant %s left to expire: %s", stream.tenant_id, error)

    async def _watch(self) -> None:
        renew_every = settings.STREAM_LEASE_SECONDS / 3  # a lease outlives two missed renewals
        tick = min(settings.STREAM_ACCESS_CHECK_SECONDS, renew_every)
        renewed_at = time.monotonic()
        while self._streams:
            await asyncio.sleep(tick)
            await self._end_streams_without_access()
            if time.monotonic() - renewed_at >= renew_every - tick / 2:
                await self._renew_leases()
                renewed_at = time.monotonic()
            await self._forget_unstarted()

    async def _end_streams_without_access(self) -> None:
        key_ids = {stream.api_key_id for stream in self._streams}
        try:
            refused = await sync_to_async(_api_keys_refused, thread_sensitive=False)(key_ids)
        except Exception:  # a database hiccup must not end healthy streams
            log.warning("could not re-check the keys of open streams", exc_info=True)
            return
        for stream in list(self._streams):
            if code := refused.get(stream.api_key_id):
                stream.end(Ending(code, ACCESS_ENDINGS[code]))

    async def _renew_leases(self) -> None:
        leases: dict[int, list[str]] = {}
        for stream in self._streams:
            leases.setdefault(stream.tenant_id, []).append(stream.lease)
        try:
            await stream_slots.renew(leases)
        except RedisError as error:
            log.warning("could not renew stream slots: %s", error)

    async def _forget_unstarted(self) -> None:
        cutoff = time.monotonic() - UNSTARTED_GRACE_SECONDS
        for stream in [s for s in self._streams if not s.started and s.admitted_at < cutoff]:
            await self.release(stream)


def _api_keys_refused(key_ids: set[int]) -> dict[int, str]:
    try:
        return selectors.api_keys_refused(key_ids)
    finally:
        connection.close()  # this thread serves no request: hold no connection between checks


# Weak: a loop that is gone (the test client runs each request on its own) takes its
# registry with it, and a new loop never inherits a dead loop's watcher.
_per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, OpenStreams] = (
    weakref.WeakKeyDictionary()
)


def open_streams() -> OpenStreams:
    """The open streams of the running event loop (one loop per web process)."""
    loop = asyncio.get_running_loop()
    registry = _per_loop.get(loop)
    if registry is None:
        registry = _per_loop[loop] = OpenStreams()
    return registry
