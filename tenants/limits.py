"""The per-tenant resource limiter, atomic in Redis (Lua scripts in `lua/`).

Before every model call one script checks the daily and monthly token budgets, takes a
token from the requests-per-minute bucket and reserves the call's estimated tokens;
after the call `settle()` corrects the reservation to the real usage. A turn holds one
of the tenant's concurrent-turn slots while it runs; over the cap its session is parked
and the turn that frees a slot hands it over. Limits are read from the Tenant row each
time, so an operator's change applies to the next call without a restart.

Redis keeps nothing on disk here: budget counters that are missing are re-seeded from
the UsageRecord table, which is the truth.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings
from django.db.models import F, Sum
from redis.client import Pipeline
from redis.exceptions import RedisError

from beamclaw.redis import get_redis, key, lua_script

from . import stream_slots
from .models import Tenant, UsageRecord

log = logging.getLogger(__name__)

_LUA = Path(__file__).parent / "lua"


def _script(name: str):
    return lua_script(get_redis(), _LUA / f"{name}.lua")


class LimitExceeded(Exception):
    def __init__(self, limit: str, message: str, *, retry_after: float = 0.0):
        super().__init__(message)
        self.limit = limit
        self.message = message
        self.retry_after = retry_after


class BudgetExceeded(LimitExceeded):
    code = "budget_exceeded"


class RateLimited(LimitExceeded):
    code = "rate_limited"


def _tenant_key(tenant_id: int, *parts: object) -> str:
    return key("t", tenant_id, *parts)


def _periods(now: datetime) -> tuple[str, str]:
    return now.strftime("%Y%m%d"), now.strftime("%Y%m")


def _budget_keys(tenant_id: int, now: datetime) -> tuple[str, str]:
    day, month = _periods(now)
    return _tenant_key(tenant_id, "tokens", "day", day), _tenant_key(
        tenant_id, "tokens", "month", month
    )


def _used_since(tenant_id: int, since: datetime) -> int:
    totals = UsageRecord.objects.filter(tenant_id=tenant_id, created_at__gte=since).aggregate(
        tokens=Sum(F("input_tokens") + F("output_tokens"))
    )
    return totals["tokens"] or 0


def _seed_budgets(tenant_id: int, now: datetime) -> None:
    """Re-create missing budget counters from the usage table (after a Redis restart)."""
    day_key, month_key = _budget_keys(tenant_id, now)
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    month_start = day_start.replace(day=1)
    pipe = get_redis().pipeline(transaction=False)
    pipe.set(day_key, _used_since(tenant_id, day_start), nx=True, ex=2 * 86400)
    pipe.set(month_key, _used_since(tenant_id, month_start), nx=True, ex=33 * 86400)
    pipe.execute()


@dataclass
class Reservation:
    tenant_id: int
    estimate: int
    day_key: str
    month_key: str


def admit_call(tenant: Tenant, estimate: int) -> Reservation:
    """Take a request token and reserve `estimate` tokens, or raise what stops the call."""
    now = datetime.now(UTC)
    day_key, month_key = _budget_keys(tenant.pk, now)
    keys = [_tenant_key(tenant.pk, "rpm"), day_key, month_key]
    args = [
        tenant.requests_per_minute,
        estimate,
        tenant.tokens_per_day,
        tenant.tokens_per_month,
    ]
    status, wait_ms = _script("admit_call")(keys=keys, args=args)
    if status == "seed":
        _seed_budgets(tenant.pk, now)
        status, wait_ms = _script("admit_call")(keys=keys, args=args)
    if status == "ok":
        return Reservation(tenant.pk, estimate, day_key, month_key)
    if status == "rate":
        raise RateLimited(
            "rate",
            f"Over {tenant.requests_per_minute} model calls per minute.",
            retry_after=int(wait_ms) / 1000,
        )
    period = "daily" if status == "budget_day" else "monthly"
    raise BudgetExceeded(
        "budget", f"The tenant's {period} token budget is spent (this call needs ~{estimate})."
    )


def settle(reservation: Reservation, actual_tokens: int) -> None:
    """Replace the reserved estimate with what the call really used.

    Never fails the caller: the answer is already paid for. If Redis is unreachable the
    counter keeps the estimate until it is re-seeded from the usage table.
    """
    if actual_tokens == reservation.estimate:
        return
    pipe = get_redis().pipeline(transaction=False)
    settle_on(pipe, reservation, actual_tokens)
    try:
        pipe.execute()
    except RedisError:
        log.warning("could not settle token usage for tenant %s", reservation.tenant_id)


def settle_on(pipe: Pipeline, reservation: Reservation, actual_tokens: int) -> None:
    """settle(), queued on `pipe` to go with the caller's next round trip; the caller runs
    it and, like settle(), must not fail on an error (the counter keeps the estimate)."""
    delta = actual_tokens - reservation.estimate
    if delta:
        pipe.incrby(reservation.day_key, delta)
        pipe.incrby(reservation.month_key, delta)


# --- Concurrent turns -----------------------------------------------------------------


def slots_key(tenant_id: int) -> str:
    return _tenant_key(tenant_id, "slots")


def _parked_key(tenant_id: int) -> str:
    return _tenant_key(tenant_id, "parked")


def _rate_parked_key(tenant_id: int) -> str:
    return _tenant_key(tenant_id, "rate-parked")


def note_rate_parked(tenant_id: int, session_id: int, *, resumes_in: float) -> None:
    """Count the session as parked by the request rate until it resumes (for the tenant's
    own view: `parked_sessions`); the entry lapses by itself at that time."""
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    parked = _rate_parked_key(tenant_id)
    pipe = get_redis().pipeline(transaction=False)
    pipe.zadd(parked, {session_id: now_ms + int(resumes_in * 1000)})
    pipe.zremrangebyscore(parked, "-inf", now_ms)
    pipe.pexpire(parked, int(resumes_in * 1000) + 60_000)
    pipe.execute()


def _slot_ttl_ms() -> int:
    return int(settings.TURN_LEASE_SECONDS * 1000)


def acquire_slot(tenant: Tenant, session_id: int, *, order: int) -> bool:
    """A concurrent-turn slot for the session; False means it is parked (in `order`)."""
    return bool(
        _script("acquire_slot")(
            keys=[slots_key(tenant.pk), _parked_key(tenant.pk)],
            args=[session_id, tenant.max_concurrent_turns, _slot_ttl_ms(), order],
        )
    )


def holds_slot(tenant_id: int, session_id: int) -> bool:
    return get_redis().zscore(slots_key(tenant_id), session_id) is not None


def release_slot(tenant: Tenant, session_id: int) -> int | None:
    """Free the session's slot; returns the parked session it was handed to, if any."""
    handed_to = _script("release_slot")(
        keys=[slots_key(tenant.pk), _parked_key(tenant.pk)],
        args=[session_id, tenant.max_concurrent_turns, _slot_ttl_ms()],
    )
    return int(handed_to) if handed_to else None


# --- What a tenant can see of itself --------------------------------------------------


def current_usage(tenant: Tenant) -> dict[str, int]:
    """Tokens used today and this month; turns and event streams holding a slot now; sessions
    parked by the concurrency cap or the request rate."""
    now = datetime.now(UTC)
    day_key, month_key = _budget_keys(tenant.pk, now)
    client = get_redis()
    if client.exists(day_key, month_key) != 2:
        _seed_budgets(tenant.pk, now)
    now_ms = int(now.timestamp() * 1000)
    pipe = client.pipeline(transaction=False)
    pipe.get(day_key)
    pipe.get(month_key)
    pipe.zcount(slots_key(tenant.pk), now_ms, "+inf")
    pipe.zcard(_parked_key(tenant.pk))
    pipe.zcount(_rate_parked_key(tenant.pk), now_ms, "+inf")
    pipe.zcount(stream_slots.key_of(tenant.pk), now_ms, "+inf")
    day, month, running, parked_for_slot, parked_for_rate, streams = pipe.execute()
    return {
        "tokens_today": int(day or 0),
        "tokens_this_month": int(month or 0),
        "concurrent_turns": running,
        "parked_sessions": parked_for_slot + parked_for_rate,
        "open_streams": streams,
        "sessions": tenant.sessions.count(),
    }


def out_of_budget(tenants: list[Tenant]) -> set[int]:
    """The ids of these tenants whose day or month token budget is used up now.

    Read-only: a counter missing after a Redis restart counts as not exhausted (the next
    model call re-seeds it from the usage table).
    """
    if not tenants:
        return set()
    now = datetime.now(UTC)
    pipe = get_redis().pipeline(transaction=False)
    for tenant in tenants:
        for budget_key in _budget_keys(tenant.pk, now):
            pipe.get(budget_key)
    used = pipe.execute()
    exhausted = set()
    for index, tenant in enumerate(tenants):
        day, month = used[2 * index], used[2 * index + 1]
        if int(day or 0) >= tenant.tokens_per_day or int(month or 0) >= tenant.tokens_per_month:
            exhausted.add(tenant.pk)
    return exhausted
