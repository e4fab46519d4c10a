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
from collections.abc import Sequence

from beamclaw.celery import TENANT_QUEUE_PREFIX, app, tenant_queue
from tenants.models import Tenant

from .models import ShardMap, ShardMapStatus
from .shards import Shard

log = logging.getLogger(__name__)


# This process's shard; a worker sets it at start (fleet.worker.WorkerOptions).
current_shard = Shard.from_options(
    os.environ.get("BEAMCLAW_WORKER_SHARD"), os.environ.get("BEAMCLAW_WORKER_TENANTS")
)


def set_current_shard(shard: Shard) -> None:
    global current_shard
    current_shard = shard


def current_maps() -> list[ShardMap]:
    """The active shard map and one being added, if any: a worker consumes what either
    gives it (make-before-break). Empty when no map was ever written."""
    statuses = [ShardMapStatus.ACTIVE, ShardMapStatus.ADDING]
    return list(ShardMap.objects.filter(status__in=statuses).order_by("-epoch")[:2])


def tenant_queues_for(shard: Shard, maps: Sequence[ShardMap] | None = None) -> list[str]:
    maps = current_maps() if maps is None else maps
    # Suspended tenants too: their turns end at once with `tenant_suspended` instead of
    # piling up unread in the queue (with the reaper's re-sent triggers). A deleted
    # tenant's queue is left: it leaves running workers at their next reconcile.
    rows = Tenant.objects.values_list("slug", "dedicated_workers")
    return [
        tenant_queue(slug)
        for slug, dedicated in rows
        if shard.owns(slug, dedicated=dedicated, maps=maps)
    ]


# The epochs of the maps this worker's queues follow now (shown in the worker registry).
applied_epochs: list[int] = []

# What a warm standby (fleet.standby) will consume when it is activated, kept fresh while
# it waits, so activating it needs no database query.
standby_queues: list[str] = []


def prepare_standby() -> None:
    standby_queues[:] = tenant_queues_for(current_shard)


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


def request_reconcile(destination: list[str] | None = None) -> None:
    """Ask workers (all, or these) to reconcile their queues now."""
    app.control.broadcast("reconcile_tenant_queues", destination=destination, reply=False)


def announce_new_tenant(sender: type, tenant: Tenant, **kwargs: object) -> None:
    """Receiver of tenants.signals.tenant_created."""
    announce_tenant_queue(tenant.slug, dedicated=tenant.dedicated_workers)
