"""How many workers each shard needs: the signal for an autoscaler.

Raw queue length is a poor signal here: prefetch hides messages inside workers, a turn
parked by its tenant's concurrency cap or budget sits in the queue but no new worker
would run it sooner, and one session's turns run one after another whatever the
capacity. So the count comes from the Turn table and the tenants' limits:

- running: turns running now;
- runnable: sessions whose next turn could start now (queued, nothing running or waiting
  in the session), up to what the tenant's concurrency cap leaves, and none for a
  suspended tenant or one whose token budget is used up (those are `parked`);
- arrival rate (turns created per second over CAPACITY_ARRIVAL_WINDOW_SECONDS) and
  service time (seconds a turn holds a worker thread, mean over the last finished ones).

Threads needed: max(arrival x service, running) + runnable x service / BACKLOG seconds
(Little's law, plus clearing the backlog in CAPACITY_BACKLOG_SECONDS), divided by what
one worker gives (threads x target utilisation). When the oldest runnable turn has
waited longer than CAPACITY_MAX_WAIT_SECONDS, enough workers to run everything at once.
Capped by the provider's request rate (more workers would only wait on 429s), clamped
to [min, max], then stabilised: up at once, down only when the whole
CAPACITY_SCALE_DOWN_WINDOW_SECONDS asked for less.

A beat task computes it every CAPACITY_INTERVAL_SECONDS and keeps the report in Redis
(`manage.py workers` computes it itself when the stored one is older than its interval);
/metrics (beamclaw_desired_workers{shard} and its inputs) and GET /api/v1/ops/capacity
read it.
"""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Min
from django.utils import timezone

from agents.models import Turn, TurnStatus
from beamclaw.redis import get_redis, key
from tenants import limits
from tenants.models import Tenant

from .models import ShardMap, ShardMapStatus
from .registry import list_workers
from .shards import shard_index

SERVICE_SAMPLE = 500  # finished turns the service time is the mean of
SERVICE_WINDOW_SECONDS = 600


@dataclass(frozen=True)
class Policy:
    concurrency: int = 8  # threads per worker
    utilisation: float = 0.8  # of those, how many we plan to keep busy
    backlog_seconds: float = 10.0
    max_wait_seconds: float = 5.0
    min_workers: int = 1
    max_workers: int = 10
    scale_down_window_seconds: float = 120.0
    provider_requests_per_minute: int = 0  # 0: no ceiling

    @classmethod
    def from_settings(cls) -> Policy:
        return cls(
            concurrency=settings.CAPACITY_WORKER_CONCURRENCY,
            utilisation=settings.CAPACITY_TARGET_UTILISATION,
            backlog_seconds=settings.CAPACITY_BACKLOG_SECONDS,
            max_wait_seconds=settings.CAPACITY_MAX_WAIT_SECONDS,
            min_workers=settings.CAPACITY_MIN_WORKERS,
            max_workers=settings.CAPACITY_MAX_WORKERS,
            scale_down_window_seconds=settings.CAPACITY_SCALE_DOWN_WINDOW_SECONDS,
            provider_requests_per_minute=settings.PROVIDER_REQUESTS_PER_MINUTE,
        )


@dataclass
class TenantLoad:
    tenant: str
    shard: str
    running: int = 0
    runnable: int = 0
    parked: int = 0  # next turns its own limits hold back: never a reason for a worker
    parked_by: str = ""  # "concurrency", "budget", "suspended"
    oldest_runnable_age_seconds: float = 0.0


@dataclass
class ShardLoad:
    shard: str
    running: int = 0
    runnable: int = 0
    parked: int = 0
    arrival_rate: float = 0.0  # turns per second
    service_seconds: float = 0.0  # per turn
    calls_per_turn: float = 1.0
    oldest_runnable_age_seconds: float = 0.0
    tenants: list[TenantLoad] = field(default_factory=list)


@dataclass
class Decision:
    shard: str
    desired_workers: int  # what to run: stabilised
    raw_desired_workers: int  # this tick's answer before stabilisation
    needed_threads: float
    ceiling_workers: int | None
    reason: str  # what decided the raw count


def shard_label(index: int, count: int) -> str:
    """`--shard 0/4` is `0-of-4` here: a valid Kubernetes label value, for HPA selectors."""
    return f"{index}-of-{count}"


def active_map() -> ShardMap | None:
    return ShardMap.objects.filter(status=ShardMapStatus.ACTIVE).order_by("-epoch").first()


def shard_count(shard_map: ShardMap | None) -> int:
    """The active shard map's count; WORKER_SHARDS when no map was ever written."""
    return shard_map.shard_count if shard_map else settings.WORKER_SHARDS


def shard_of(tenant: Tenant, shard_map: ShardMap | None = None) -> str:
    """The shard label a tenant's queue belongs to (as workers' --shard / --tenants)."""
    if tenant.dedicated_workers:
        return f"dedicated-{tenant.slug}"
    if shard_map is not None:
        return shard_label(shard_map.shard_of(tenant.slug), shard_map.shard_count)
    count = settings.WORKER_SHARDS
    return shard_label(shard_index(tenant.slug, count), count)


# --- The decision (pure) ------------------------------------------------------------------


def decide(load: ShardLoad, policy: Policy) -> Decision:
    """This tick's worker count for one shard, before stabilisation."""
    service = load.service_seconds
    threads = max(load.arrival_rate * service, load.running)
    threads += load.runnable * service / policy.backlog_seconds
    per_worker = policy.concurrency * policy.utilisation
    desired, reason = math.ceil(threads / per_worker - 1e-9), "load"
    if load.runnable and load.oldest_runnable_age_seconds > policy.max_wait_seconds:
        everything = math.ceil((load.running + load.runnable) / policy.concurrency)
        if everything > desired:
            desired, reason = everything, "oldest_wait"
    ceiling = None
    if policy.provider_requests_per_minute:
        # Threads the provider can keep busy: calls/s x seconds per turn / calls per turn.
        useful = policy.provider_requests_per_minute / 60 * service / max(load.calls_per_turn, 1)
        ceiling = max(1, math.ceil(useful / per_worker))
        if desired > ceiling:
            desired, reason = ceiling, "provider_ceiling"
    if desired < policy.min_workers:
        desired, reason = policy.min_workers, "min_workers"
    elif desired > policy.max_workers:
        desired, reason = policy.max_workers, "max_workers"
    return Decision(load.shard, desired, desired, round(threads, 2), ceiling, reason)


def stabilise(raw: int, history: list[tuple[float, int]], now: float, window: float) -> int:
    """Up at once, down slowly: the highest count asked for within the window."""
    return max([raw, *(count for at, count in history if now - at <= window)])


# --- Measuring (database and Redis) --------------------------------------------------------


def measure(shard_map: ShardMap | None, now=None) -> dict[str, ShardLoad]:
    """Every shard's load now under `shard_map` (None: no map written), with a line per
    tenant that has work."""
    now = now or timezone.now()
    active = list(
        Turn.objects.filter(status__in=[TurnStatus.QUEUED, TurnStatus.RUNNING, TurnStatus.WAITING])
        .values("tenant_id", "session_id", "status")
        .annotate(count=Count("id"), oldest=Min("created_at"))
    )
    busy_sessions = {
        row["session_id"] for row in active if row["status"] != TurnStatus.QUEUED
    }  # running or waiting for sub-agents: its queued turns go after, not now
    running: dict[int, int] = defaultdict(int)
    heads: dict[int, list] = defaultdict(list)  # tenant -> created_at of each waiting head
    for row in active:
        if row["status"] == TurnStatus.RUNNING:
            running[row["tenant_id"]] += row["count"]
        elif row["status"] == TurnStatus.QUEUED and row["session_id"] not in busy_sessions:
            heads[row["tenant_id"]].append(row["oldest"])

    window = settings.CAPACITY_ARRIVAL_WINDOW_SECONDS
    arrivals = dict(
        Turn.objects.filter(created_at__gte=now - timedelta(seconds=window))
        .values_list("tenant_id")
        .annotate(n=Count("id"))
    )
    tenant_ids = set(running) | set(heads) | set(arrivals)
    tenants = {t.pk: t for t in Tenant.objects.filter(pk__in=tenant_ids)}
    exhausted = limits.out_of_budget([tenants[i] for i in heads if i in tenants])

    shards: dict[str, ShardLoad] = {}
    for tenant_id, tenant in sorted(tenants.items(), key=lambda item: item[1].slug):
        label = shard_of(tenant, shard_map)
        shard = shards.setdefault(label, ShardLoad(label))
        load = TenantLoad(tenant.slug, label, running=running.get(tenant_id, 0))
        waiting = sorted(heads.get(tenant_id, []))
        if not tenant.is_active:
            load.parked, load.parked_by = len(waiting), "suspended"
        elif tenant_id in exhausted:
            load.parked, load.parked_by = len(waiting), "budget"
        else:
            free = max(0, tenant.max_concurrent_turns - load.running)
            load.runnable = min(len(waiting), free)
            load.parked = len(waiting) - load.runnable
            load.parked_by = "concurrency" if load.parked else ""
        if load.runnable:
            load.oldest_runnable_age_seconds = round((now - waiting[0]).total_seconds(), 2)
        shard.running += load.running
        shard.runnable += load.runnable
        shard.parked += load.parked
        shard.arrival_rate += arrivals.get(tenant_id, 0) / window
        shard.oldest_runnable_age_seconds = max(
            shard.oldest_runnable_age_seconds, load.oldest_runnable_age_seconds
        )
        if load.running or load.runnable or load.parked:
            shard.tenants.append(load)
    _add_service_times(shards, tenants, shard_map, now)
    return shards


def _add_service_times(shards: dict[str, ShardLoad], tenants: dict, shard_map, now) -> None:
    finished = (
        Turn.objects.filter(
            finished_at__gte=now - timedelta(seconds=SERVICE_WINDOW_SECONDS),
            started_at__isnull=False,
            tenant_id__in=list(tenants),
        )
        .order_by("-finished_at")
        .values_list("tenant_id", "started_at", "finished_at", "iterations")[:SERVICE_SAMPLE]
    )
    seconds: dict[str, list[float]] = defaultdict(list)
    calls: dict[str, list[int]] = defaultdict(list)
    for tenant_id, started, ended, iterations in finished:
        label = shard_of(tenants[tenant_id], shard_map)
        seconds[label].append(max(0.0, (ended - started).total_seconds()))
        calls[label].append(max(1, iterations))
    for label, shard in shards.items():
        samples = seconds.get(label)
        shard.service_seconds = round(
            sum(samples) / len(samples) if samples else settings.CAPACITY_DEFAULT_SERVICE_SECONDS,
            3,
        )
        if calls.get(label):
            shard.calls_per_turn = round(sum(calls[label]) / len(calls[label]), 2)


# --- The report ---------------------------------------------------------------------------


def report_key() -> str:
    return key("capacity", "report")


def _history_key(shard: str) -> str:
    return key("capacity", "history", shard)


def compute(policy: Policy | None = None) -> dict:
    """Measure, decide and stabilise every shard; store and return the report."""

    policy = policy or Policy.from_settings()
    now = time.time()
    shard_map = active_map()
    shards = measure(shard_map=shard_map)
    count = shard_count(shard_map)
    for label in (shard_label(index, count) for index in range(count)):
        shards.setdefault(label, ShardLoad(label))  # an idle shard: reported at its minimum
    workers_by_shard: dict[str, int] = defaultdict(int)
    for entry in list_workers():
        if entry.get("state") == "active":
            workers_by_shard[_registry_label(entry["shard"], shard_map)] += 1
    client = get_redis()
    report_shards = []
    for label, load in sorted(shards.items()):
        decision = decide(load, policy)
        history_key = _history_key(label)
        window = policy.scale_down_window_seconds
        pipe = client.pipeline(transaction=False)
        pipe.zadd(history_key, {f"{now:.3f}:{decision.raw_desired_workers}": now})
        pipe.zremrangebyscore(history_key, "-inf", now - window)
        pipe.expire(history_key, math.ceil(window) + 60)
        pipe.zrange(history_key, 0, -1, withscores=True)
        history = [(at, int(member.rsplit(":", 1)[1])) for member, at in pipe.execute()[-1]]
        decision.desired_workers = stabilise(decision.raw_desired_workers, history, now, window)
        shard = asdict(load)
        report_shards.append(
            {
                **{k: v for k, v in shard.items() if k != "tenants"},
                **{k: v for k, v in asdict(decision).items() if k != "shard"},
                "current_workers": workers_by_shard.get(label, 0),
                "tenants": shard["tenants"],
            }
        )
    report = {
        "computed_at": timezone.now().isoformat(timespec="seconds"),
        "computed_at_epoch": round(now, 3),
        "policy": asdict(policy),
        "shards": report_shards,
        "by_shard": {s["shard"]: s["desired_workers"] for s in report_shards},
    }
    client.set(
        report_key(), json.dumps(report), ex=max(30, round(settings.CAPACITY_INTERVAL_SECONDS * 6))
    )
    return report


def _registry_label(shard: str, shard_map: ShardMap | None) -> str:
    """`shard 0/4` or `dedicated to a` (a worker's entry) as a report label; under a
    shard map, a worker's index counts in the map's shards."""
    if shard.startswith("shard "):
        index, count = (int(n) for n in shard.removeprefix("shard ").split("/"))
        return shard_label(index, shard_map.shard_count if shard_map else count)
    return "dedicated-" + shard.removeprefix("dedicated to ").replace(", ", "-")


def latest_report(*, max_age: float | None = None) -> dict:
    """The report the beat task stored last; computed now if there is none (no beat) or
    it is older than `max_age` seconds (the supervisor's look at the load)."""
    stored = get_redis().get(report_key())
    if not stored:
        return compute()
    report = json.loads(stored)
    if max_age is not None and time.time() - report.get("computed_at_epoch", 0) > max_age:
        return compute()
    return report
