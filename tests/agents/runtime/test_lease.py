"""The session lease: a late renewal by the keeper thread never revives a released lease."""

import uuid

import pytest

from agents import services
from agents.runtime.lease import Lease
from beamclaw.redis import get_redis
from tenants.models import Tenant

pytestmark = pytest.mark.django_db


def test_a_renewal_landing_after_the_release_does_not_take_the_session_back():
    tenant = Tenant.objects.create(slug=f"lease-{uuid.uuid4().hex[:8]}", name="Lease")
    services.create_agent(tenant=tenant, slug="ops")
    session_id = services.submit_message(
        tenant=tenant, session_key="agent:ops:main", content="hi"
    ).turn.session_id
    lease = Lease(tenant.pk, session_id)
    assert lease.acquire()

    # The keeper thread took its list of leases just before the turn ended, and renews
    # this one just after the release.
    lease.release()
    renewed = lease.renew()

    assert renewed  # not "lost": there was nothing left to keep
    assert not get_redis().exists(lease.key)
    assert Lease(tenant.pk, session_id).acquire()  # the session's next trigger runs it
