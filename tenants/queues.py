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
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from celery.worker.control import control_command

from beamclaw.celery import TENANT_QUEUE_PREFIX, app, tenant_queue

if TYPE_CHECKING:
    from .models import ShardMap

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

    def owns(self, slug: str, *, dedicated: bool, maps: Sequence[ShardMap] = ()) -> bool:
        """Under the shard maps given (the active one and one being added), else under
        this worker's own `k/N`."""
        if self.tenants:
            return slug in self.tenants
        if dedicated:
            return False
        if maps:
            return any(shard_map.shard_of(slug) == self.index for shard_map in maps)
        return shard_index(slug, self.count) == self.index

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


def current_maps() -> list[ShardMap]:
    """The active shard map and one being added, if any: a worker consumes what either
    gives it (make-before-break). Empty when no map was ever written."""
    from .models import ShardMap, ShardMapStatus

    statuses = [ShardMapStatus.ACTIVE, ShardMapStatus.ADDING]
    return list(ShardMap.objects.filter(status__in=statuses).order_by("-epoch")[:2])


def tenant_queues_for(shard: Shard, maps: Sequence[ShardMap] | None = None) -> list[str]:
    from .models import Tenant

    maps = current_maps() if maps is None else maps
    # Suspended tenants too: their turns end at once with `tenant_suspended` instead of
    # piling up unread in the queue.
    rows = Tenant.objects.values_list("slug", "dedicated_workers")
    return [
        tenant_queue(slug)
        for slug, dedicated in rows
        if shard.owns(slug, dedicated=dedicated, maps=maps)
    ]


# The epochs of the maps this worker's queues follow now (shown in the worker registry).
applied_epochs: list[int] = []


def consumed_tenant_queues(consumer) -> set[str]:
    task_consumer = getattr(consumer, "task_consumer", None)
    if task_consumer is None:
        return set()
    return {q.name for q in task_consumer.queues if q.name.startswith(TENANT_QUEUE_PREFIX)}


def queues_to_change(consumer) -> tuple[list[str], list[str], list[int]]:
    """(queues to add, queues to cancel, map epochs) for this worker to consume exactly
    its tenants' queues under the current maps."""
    maps = current_maps()
    desired = set(tenant_queues_for(current_shard, maps))
    current = consumed_tenant_queues(consumer)
    return sorted(desired - current), sorted(current - desired), [m.epoch for m in maps]


def reconcile(consumer) -> dict:
    """Consume exactly this worker's tenant queues (the default queue is left alone).
    Runs in the consumer's thread (a control command): kombu's channel is not shared."""
    add, cancel, epochs = queues_to_change(consumer)
    for queue in add:
        consumer.add_task_queue(queue)
    for queue in cancel:
        consumer.cancel_task_queue(queue)
    applied_epochs[:] = epochs
    if add or cancel:
        log.info(
            "%s: +%d -%d tenant queue(s), maps %s", current_shard, len(add), len(cancel), epochs
        )
    return {"added": add, "cancelled": cancel, "epochs": epochs}


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


# The two commands below change the worker's queues after their handler has returned, in
# the consumer's loop (call_soon). With RabbitMQ, declaring and consuming a queue waits for
# the broker's answer, and meanwhile py-amqp runs the next control message's handler inside
# this one: a burst of announcements (a thousand new tenants) nested until RecursionError,
# and two nested handlers could consume one queue twice. Nobody reads their replies.


@control_command(args=[("slug", str), ("dedicated", bool)], signature="<slug> <dedicated>")
def consume_tenant(state, slug: str, dedicated: bool = False) -> dict:
    """Worker side of announce_tenant_queue: start consuming if our shard owns the tenant."""
    state.consumer.call_soon(_consume_tenant, state.consumer, slug, dedicated)
    return {"ok": f"will consume {tenant_queue(slug)} if {current_shard} owns it"}


def _consume_tenant(consumer, slug: str, dedicated: bool) -> None:
    from agents.runtime.loop import draining

    if draining.is_set():  # a drain began since the announcement
        return
    if current_shard.owns(slug, dedicated=dedicated, maps=current_maps()):
        consumer.add_task_queue(tenant_queue(slug))


@control_command()
def reconcile_tenant_queues(state) -> dict:
    """Reconcile now (the worker also does it every QUEUE_RECONCILE_SECONDS by itself)."""
    state.consumer.call_soon(_reconcile_now, state.consumer)
    return {"ok": "reconciling"}


def _reconcile_now(consumer) -> None:
    from agents.runtime.loop import draining
    from beamclaw import workers

    if draining.is_set():
        return
    reconcile(consumer)
    workers.beat_now()  # `reshard` waits for the registry to show the new epochs


def request_reconcile(destination: list[str] | None = None) -> None:
    """Ask workers (all, or these) to reconcile their queues now."""
    app.control.broadcast("reconcile_tenant_queues", destination=destination, reply=False)
