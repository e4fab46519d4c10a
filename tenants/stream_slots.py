"""The per-tenant cap on open event streams and `wait` requests, atomic in Redis.

Each open stream holds a slot: a lease in the tenant's sorted set (lease -> expiry),
taken by a Lua script against `Tenant.max_concurrent_streams`, renewed while the stream
is open and removed when it ends. The count holds across every web process, and a web
process that dies frees its slots when their leases run out. Asyncio only: the callers
are the async views that hold the streams.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from beamclaw.redis import get_async_redis, key, lua_script

from .models import Tenant

_LUA = Path(__file__).parent / "lua"


def _script(name: str):
    """The script, registered on this event loop's client."""
    return lua_script(get_async_redis(), _LUA / f"{name}.lua")


def key_of(tenant_id: int) -> str:
    return key("t", tenant_id, "streams")


def _ttl_ms() -> int:
    return int(settings.STREAM_LEASE_SECONDS * 1000)


async def acquire(tenant: Tenant, lease: str) -> bool:
    """Take a slot for `lease`; False when the tenant has its cap of streams open."""
    taken = await _script("acquire_stream_slot")(
        keys=[key_of(tenant.pk)], args=[lease, tenant.max_concurrent_streams, _ttl_ms()]
    )
    return bool(taken)


async def renew(leases_by_tenant: dict[int, list[str]]) -> None:
    """Extend every lease this process holds, one script call per tenant, one round trip."""
    if not leases_by_tenant:
        return
    script = _script("renew_stream_slots")
    pipe = get_async_redis().pipeline(transaction=False)
    for tenant_id, leases in leases_by_tenant.items():
        await script(keys=[key_of(tenant_id)], args=[_ttl_ms(), *leases], client=pipe)
    await pipe.execute()


async def release(tenant_id: int, lease: str) -> None:
    await get_async_redis().zrem(key_of(tenant_id), lease)
