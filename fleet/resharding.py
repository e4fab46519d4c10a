"""Moving tenant queues between shards while the platform runs, make-before-break.

`reshard(shard_count=..., pins=...)` writes a new ShardMap as `adding`: every worker
consumes what the old map or the new one gives it, so a moving tenant's queue has both
its old and its new owner for a moment (a message goes to whichever pops it first: none
is lost or doubled). Once every running worker shows the new epoch in the registry, the
map becomes `active` and the old owners let go. A worker that misses the broadcasts gets
there by itself within QUEUE_RECONCILE_SECONDS.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from tenants.models import Tenant

from .models import ShardMap, ShardMapStatus
from .queues import request_reconcile
from .registry import list_workers
from .shards import shard_index


class ReshardError(Exception):
    """Nothing changed; the message says why."""


@dataclass
class Move:
    tenant: str
    before: str
    after: str


@dataclass
class ReshardResult:
    shard_map: ShardMap
    moves: list[Move]
    workers: list[str]
    idle_workers: list[str] = field(default_factory=list)  # their index is past the count
    seconds: float = 0.0


def _label(index: int, count: int) -> str:
    return f"{index}/{count}"


def plan(previous: ShardMap | None, new: ShardMap) -> list[Move]:
    """The tenants whose shard changes (dedicated tenants are not in hash shards)."""
    old_count = previous.shard_count if previous else settings.WORKER_SHARDS
    moves = []
    for slug in Tenant.objects.filter(dedicated_workers=False).values_list("slug", flat=True):
        before = previous.shard_of(slug) if previous else shard_index(slug, old_count)
        after = new.shard_of(slug)
        if (before, old_count) != (after, new.shard_count):
            moves.append(Move(slug, _label(before, old_count), _label(after, new.shard_count)))
    return moves


def _active_workers() -> list[dict]:
    return [entry for entry in list_workers() if entry.get("state") == "active"]


def _wait_for(condition: Callable[[dict], bool], timeout: float) -> list[str]:
    """Poll the registry until every active worker meets `condition`; the ones that do not."""
    deadline = time.monotonic() + timeout
    while True:
        behind = [e["hostname"] for e in _active_workers() if not condition(e)]
        if not behind or time.monotonic() > deadline:
            return behind
        time.sleep(0.2)  # workers write their entry as soon as they reconciled


def _validate(shard_count: int, pins: dict[str, int]) -> None:
    if shard_count < 1:
        raise ReshardError("--shards must be at least 1")
    bad = {slug: index for slug, index in pins.items() if not 0 <= index < shard_count}
    if bad:
        raise ReshardError(f"pins outside 0..{shard_count - 1}: {bad}")
    known = set(Tenant.objects.filter(slug__in=pins).values_list("slug", flat=True))
    if unknown := sorted(set(pins) - known):
        raise ReshardError(f"no tenant {', '.join(unknown)}")


def reshard(
    *, shard_count: int, pins: dict[str, int] | None = None, timeout: float = 30.0, note: str = ""
) -> ReshardResult:
    """Switch to a new shard map without a moment in which a tenant has no consumer."""
    pins = pins or {}
    _validate(shard_count, pins)
    started = time.monotonic()
    with transaction.atomic():
        maps = ShardMap.objects.select_for_update()
        if pending := maps.filter(status=ShardMapStatus.ADDING).first():
            raise ReshardError(
                f"map {pending.epoch} is still being added by another reshard; wait for it, "
                "or run `reshard --abort` if that one died"
            )
        previous = maps.filter(status=ShardMapStatus.ACTIVE).order_by("-epoch").first()
        epoch = (ShardMap.objects.aggregate(top=Max("epoch"))["top"] or 0) + 1
        new = ShardMap.objects.create(
            epoch=epoch, shard_count=shard_count, pins=pins, note=note[:200]
        )
    moves = plan(previous, new)

    # Make: every worker takes up the new map's queues, keeping the old ones.
    request_reconcile()
    behind = _wait_for(lambda e: epoch in e.get("shard_map_epochs", []), timeout)
    if behind:
        new.delete()
        request_reconcile()
        raise ReshardError(
            f"{', '.join(behind)} did not take up map {epoch} within {timeout:.0f} s; "
            "nothing changed (is a worker stuck? see GET /api/v1/ops/workers)"
        )
    # Break: the new map alone.
    with transaction.atomic():
        if previous is not None:
            ShardMap.objects.filter(pk=previous.pk).update(status=ShardMapStatus.RETIRED)
        ShardMap.objects.filter(pk=new.pk).update(
            status=ShardMapStatus.ACTIVE, activated_at=timezone.now()
        )
    new.refresh_from_db()
    request_reconcile()
    _wait_for(lambda e: e.get("shard_map_epochs") == [epoch], timeout)
    workers = _active_workers()
    idle = [
        e["hostname"]
        for e in workers
        if e["shard"].startswith("shard ")
        and int(e["shard"].removeprefix("shard ").split("/")[0]) >= shard_count
    ]
    return ReshardResult(
        shard_map=new,
        moves=moves,
        workers=[e["hostname"] for e in workers],
        idle_workers=idle,
        seconds=time.monotonic() - started,
    )


def abort() -> int:
    """Drop a map left `adding` by a reshard that died; returns how many were dropped."""
    dropped, _ = ShardMap.objects.filter(status=ShardMapStatus.ADDING).delete()
    if dropped:
        request_reconcile()
    return dropped
