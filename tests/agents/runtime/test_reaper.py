"""The reaper re-sends the trigger of every turn whose Celery message may be lost."""

from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.utils import timezone

from agents.models import ChannelDelivery, Turn
from agents.runtime.lease import Lease
from agents.runtime.reaper import reap_stale_turns
from beamclaw.redis import broker_key_prefix
from tests.factories import (
    AgentFactory,
    ChannelBindingFactory,
    TurnFactory,
    UnconsumedTenantFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def lonely():
    """A tenant no running worker consumes (created without the broadcast)."""
    return UnconsumedTenantFactory(name="Lonely")


def submit(tenant, key="agent:ops:main"):
    if not tenant.agents.exists():
        AgentFactory(tenant=tenant, slug="ops")
    return TurnFactory(tenant=tenant, session_key=key, content="hi")


def test_a_turn_whose_trigger_could_not_be_sent_is_sent_by_the_reaper(lonely):
    turn = submit(lonely)
    client = redis.Redis.from_url(settings.REDIS_URL)
    queue = broker_key_prefix() + lonely.queue_name
    client.delete(queue)  # as if the broker had been down
    Turn.objects.filter(pk=turn.pk).update(dispatch_pending=True)

    report = reap_stale_turns()

    assert report.redispatched_queued == [turn.session_id]
    assert client.llen(queue) == 1
    turn.refresh_from_db()
    assert turn.dispatch_pending is False and turn.dispatched_at is not None
    # Sent once: the next pass leaves it alone.
    assert reap_stale_turns().redispatched_queued == []


def test_an_old_queued_turn_is_re_sent_only_while_nobody_holds_its_session(lonely, settings):
    settings.TURN_REDISPATCH_AFTER_SECONDS = 30
    turn = submit(lonely)
    Turn.objects.filter(pk=turn.pk).update(created_at=timezone.now() - timedelta(minutes=5))
    lease = Lease(lonely.pk, turn.session_id)
    assert lease.acquire()

    assert reap_stale_turns().redispatched_queued == []  # its session is being served

    lease.release()
    assert reap_stale_turns().redispatched_queued == [turn.session_id]


def test_a_running_turn_whose_lease_vanished_is_re_sent_after_the_grace_period(lonely, settings):
    settings.TURN_LEASE_GRACE_SECONDS = 0
    turn = submit(lonely)
    Turn.objects.filter(pk=turn.pk).update(status="running", attempts=1)

    first = reap_stale_turns()  # notices the missing lease
    second = reap_stale_turns()  # still missing after the grace: its worker is dead

    assert first.redispatched_running == []
    assert second.redispatched_running == [turn.pk]


def test_a_running_turn_with_a_live_lease_is_left_alone(lonely, settings):
    settings.TURN_LEASE_GRACE_SECONDS = 0
    turn = submit(lonely)
    Turn.objects.filter(pk=turn.pk).update(status="running", attempts=1)
    lease = Lease(lonely.pk, turn.session_id)
    assert lease.acquire()

    assert reap_stale_turns().redispatched_running == []
    assert reap_stale_turns().redispatched_running == []
    lease.release()


def test_an_overdue_channel_reply_is_re_sent_once_and_a_retry_not_yet_due_is_left_alone(
    lonely, settings
):
    settings.TURN_REDISPATCH_AFTER_SECONDS = 30
    turns = [submit(lonely, f"agent:ops:s{i}") for i in range(4)]
    binding = ChannelBindingFactory(
        tenant=lonely, kind="slack", agent="ops", signing_secret="s" * 32, bot_token="xoxb-1"
    )
    now = timezone.now()
    overdue, retry_later, delivered, posting = (
        ChannelDelivery.objects.create(turn=turn, binding=binding, target={"channel": "C1"})
        for turn in turns
    )
    ChannelDelivery.objects.filter(pk=overdue.pk).update(next_attempt_at=now - timedelta(minutes=1))
    ChannelDelivery.objects.filter(pk=retry_later.pk).update(
        next_attempt_at=now + timedelta(minutes=2)  # a 429's Retry-After is being honoured
    )
    ChannelDelivery.objects.filter(pk=delivered.pk).update(
        next_attempt_at=now - timedelta(minutes=1), delivered_at=now
    )
    ChannelDelivery.objects.filter(pk=posting.pk).update(
        next_attempt_at=now - timedelta(minutes=1), claimed_until=now + timedelta(minutes=4)
    )
    Turn.objects.filter(pk__in=[t.pk for t in turns]).update(status="succeeded")
    client = redis.Redis.from_url(settings.REDIS_URL)
    queue = broker_key_prefix() + lonely.queue_name
    client.delete(queue)

    assert reap_stale_turns().redispatched_replies == [overdue.turn_id]
    assert client.llen(queue) == 1
    # Sent once: the next pass waits a full period for it to run.
    assert reap_stale_turns().redispatched_replies == []
