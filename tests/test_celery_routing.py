import pytest
import redis
from django.conf import settings

from beamclaw.celery import app, ping
from beamclaw.redis import broker_key_prefix
from fleet.queues import announce_tenant_queue
from tenants.models import Tenant
from tests.support import wait_until


def test_a_task_naming_its_tenant_is_routed_to_the_tenant_queue():
    route = app.amqp.router.route({}, "beamclaw.ping", args=(), kwargs={"tenant": "initech"})
    assert route["queue"].name == "tenant.initech"
    default = app.amqp.router.route({}, "beamclaw.ping", args=(), kwargs={})
    assert default["queue"].name == "beamclaw"


@pytest.mark.django_db(transaction=True)
def test_a_task_for_acme_lands_on_tenant_acme_and_a_real_worker_runs_it(worker):
    # Created without the broadcast, so the running worker does not consume it yet.
    Tenant.objects.create(slug="initech", name="Acme")
    client = redis.Redis.from_url(settings.REDIS_URL)

    result = ping.apply_async(kwargs={"tenant": "initech"})

    queues = broker_key_prefix()  # this installation's broker keys
    assert client.llen(f"{queues}tenant.initech") == 1
    assert client.llen(f"{queues}beamclaw") == 0
    announce_tenant_queue("initech")
    assert result.get(timeout=20) == "pong"
    wait_until(
        lambda: client.llen(f"{queues}tenant.initech") == 0, message="tenant.initech drained"
    )
