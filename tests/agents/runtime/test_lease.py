"""The session lease: a late renewal by the keeper thread never revives a released lease."""

import pytest

from agents.runtime.lease import Lease
from beamclaw.redis import get_redis
from tests.factories import AgentFactory, TurnFactory, UnconsumedTenantFactory

pytestmark = pytest.mark.django_db


def test_a_renewal_landing_after_the_release_does_not_take_the_session_back():
    tenant = UnconsumedTenantFactory(name="Lease")
    AgentFactory(tenant=tenant, slug="ops")
    session_id = TurnFactory(tenant=tenant, session_key="agent:ops:main", content="hi").session_id
    lease = Lease(tenant.pk, session_id)
    assert lease.acquire()

    # The keeper thread took its list of leases just before the turn ended, and renews
    # this one just after the release.
    lease.release()
    renewed = lease.renew()

    assert renewed  # not "lost": there was nothing left to keep
    assert not get_redis().exists(lease.key)
    successor = Lease(tenant.pk, session_id)
    assert successor.acquire()  # the session's next trigger runs it
    successor.release()
