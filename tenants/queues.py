"""Which tenant queues workers consume, and telling running workers about new ones."""

from __future__ import annotations

import logging

from beamclaw.celery import app, tenant_queue

log = logging.getLogger(__name__)


def active_tenant_queues() -> list[str]:
    from .models import Tenant

    slugs = Tenant.objects.filter(is_active=True).values_list("slug", flat=True)
    return [tenant_queue(slug) for slug in slugs]


def announce_tenant_queue(slug: str) -> None:
    """Broadcast add_consumer so running workers start consuming `tenant.<slug>`.

    Redis broadcasts are pub/sub and not stored: a worker that is down misses it and
    subscribes when it starts instead (beamclaw.celery.consume_tenant_queues).
    """
    try:
        app.control.add_consumer(tenant_queue(slug), reply=False)
    except Exception:  # the broker may be down; starting workers still pick it up
        log.warning("could not announce queue for tenant %s", slug, exc_info=True)
