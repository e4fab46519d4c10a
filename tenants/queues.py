"""Which tenant queues a worker consumes, and telling running workers about new tenants.

Each tenant has its own queue `tenant.<slug>`. Celery's Redis transport polls all of a
worker's queues in one BRPOP whose cost grows with the number of keys, so a worker
consumes a bounded shard: `--shard k/N` takes the tenants whose slug hashes to k mod N,
and `--tenants a,b` makes a worker dedicated to large tenants (those flagged
`dedicated_workers`, which the hash shards skip). A worker without either consumes every
non-dedicated tenant: right for one machine. Queues are per tenant, so moving a tenant
between shards moves no messages; it only changes who listens.
"""

from __future__ import annotations

import logging
import os
import zlib
from dataclasses import dataclass, field

from celery.worker.control import control_command

from beamclaw.celery import app, tenant_queue

log = logging.getLogger(__name__)


def shard_index(slug: str, count: int) -> int:
    """Stable across processes and machines (unlike hash())."""
    return zlib.crc32(slug.encode()) % count


def parse_shard(text: str) -> tuple[int, int]:
    """`"k/N"` → (k, N), with 0 ≤ k < N."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like k/N (e.g. 0/4), not {text!r}") from None
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"--shard {text}: need 0 <= k < N")
    return index, count


@dataclass(frozen=True)
class Shard:
    """The tenants one worker process serves."""

    index: int = 0
    count: int = 1
    tenants: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_options(cls, shard: str | None, tenants: str | None) -> Shard:
        names = frozenset(t.strip() for t in (tenants or "").split(",") if t.strip())
        index, count = parse_shard(shard) if shard else (0, 1)
        return cls(index=index, count=count, tenants=names)

    def owns(self, slug: str, *, dedicated: bool) -> bool:
        if self.tenants:
            return slug in self.tenants
        return not dedicated and shard_index(slug, self.count) == self.index

    def __str__(self) -> str:
        if self.tenants:
            return f"dedicated to {', '.join(sorted(self.tenants))}"
        return f"shard {self.index}/{self.count}"


# This process's shard; a worker sets it at start (beamclaw.celery.WorkerOptions).
current_shard = Shard.from_options(
    os.environ.get("BEAMCLAW_WORKER_SHARD"), os.environ.get("BEAMCLAW_WORKER_TENANTS")
)


def set_current_shard(shard: Shard) -> None:
    global current_shard
    current_shard = shard


def tenant_queues_for(shard: Shard) -> list[str]:
    from .models import Tenant

    rows = Tenant.objects.filter(is_active=True).values_list("slug", "dedicated_workers")
    return [tenant_queue(slug) for slug, dedicated in rows if shard.owns(slug, dedicated=dedicated)]


def announce_tenant_queue(slug: str, *, dedicated: bool = False) -> None:
    """Tell running workers about a new tenant; the ones whose shard owns it consume it.

    Redis broadcasts are pub/sub and not stored: a worker that is down misses it and
    subscribes when it starts instead.
    """
    try:
        app.control.broadcast(
            "consume_tenant", arguments={"slug": slug, "dedicated": dedicated}, reply=False
        )
    except Exception:  # the broker may be down; starting workers still pick it up
        log.warning("could not announce queue for tenant %s", slug, exc_info=True)


@control_command(args=[("slug", str), ("dedicated", bool)], signature="<slug> <dedicated>")
def consume_tenant(state, slug: str, dedicated: bool = False) -> dict:
    """Worker side of announce_tenant_queue: start consuming if our shard owns the tenant."""
    if not current_shard.owns(slug, dedicated=dedicated):
        return {"ok": f"not in {current_shard}"}
    queue = tenant_queue(slug)
    state.consumer.add_task_queue(queue)
    return {"ok": f"consuming {queue}"}
