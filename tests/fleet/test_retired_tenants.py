"""A deleted tenant's queue leaves every worker; a suspended tenant's stays consumed, so its
queued turns end with `tenant_suspended` instead of waiting unread (and the reaper's
re-sent triggers piling up in a queue nobody reads)."""

import os

import pytest

from beamclaw.celery import tenant_queue
from fleet.queues import tenant_queues_for
from fleet.shards import Shard
from tenants.models import Tenant
from tenants.services import create_tenant, set_limits
from tests.conftest import start_worker
from tests.support import active_queues, wait_until


@pytest.mark.django_db(transaction=True)
def test_a_running_worker_stops_consuming_a_deleted_tenants_queue_but_not_a_suspended_ones(
    platform_env, log_dir
):
    retired = create_tenant(slug="retired-tenant")
    suspended = create_tenant(slug="suspended-tenant")
    env = {**platform_env, "QUEUE_RECONCILE_SECONDS": "0.5"}
    worker = start_worker(env, log_dir, name="retiring")
    hostname = f"retiring@{os.uname().nodename}"
    try:
        assert {tenant_queue("retired-tenant"), tenant_queue("suspended-tenant")} <= (
            active_queues(hostname)
        )

        Tenant.objects.filter(pk=retired.pk).delete()
        set_limits(tenant=suspended, is_active=False)

        wait_until(
            lambda: tenant_queue("retired-tenant") not in active_queues(hostname),
            timeout=15,
            message="the deleted tenant's queue to leave the running worker",
        )
        assert tenant_queue("suspended-tenant") in active_queues(hostname)
    finally:
        worker.stop()


@pytest.mark.django_db
def test_a_starting_worker_consumes_suspended_tenants_and_not_deleted_ones():
    create_tenant(slug="kept-suspended", is_active=False)
    gone = create_tenant(slug="deleted-before-start")
    gone.delete()

    queues = tenant_queues_for(Shard.from_options(None, None), maps=[])

    assert tenant_queue("kept-suspended") in queues
    assert tenant_queue("deleted-before-start") not in queues
