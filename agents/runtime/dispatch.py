"""The runtime's one door to Celery: sending the triggers for turns, sessions and replies
on their tenant's queue, and putting back messages a dead worker had reserved.

Triggers go by task name, so the runtime never imports `agents.tasks` (which imports the
runtime to run them).

A trigger that cannot be sent (the broker is down) is not an error for the caller: the
row is already committed, so the reaper sends it once the broker answers again (a turn
is flagged `dispatch_pending`; a reply's ChannelDelivery stays due and unposted).
"""

from __future__ import annotations

import logging

from django.utils import timezone

from agents.models import Turn
from beamclaw.celery import app

log = logging.getLogger(__name__)

RUN_TURN = "agents.run_turn"
RESUME_SESSION = "agents.resume_session"
DELIVER_REPLY = "agents.deliver_reply"


def _send(name: str, **options: object) -> None:
    # Nobody reads these tasks' results. Said explicitly because a process that has not
    # imported agents.tasks (the web) would otherwise wait on the result backend, which
    # retries for seconds while Redis is down, before the broker's refusal.
    app.send_task(name, ignore_result=True, **options)


def _mark_pending(**turn_filter: object) -> None:
    Turn.objects.filter(status="queued", **turn_filter).update(dispatch_pending=True)


def dispatch_turn(turn: Turn, tenant_slug: str) -> bool:
    """Send `run_turn` to `tenant.<slug>`. False if the broker refused (the row stays queued)."""
    try:
        _send(RUN_TURN, kwargs={"tenant": tenant_slug, "turn_id": turn.pk})
    except Exception:
        log.warning("broker unreachable: turn %s waits for the reaper", turn.pk)
        _mark_pending(pk=turn.pk)
        return False
    return True


def dispatch_session(tenant_slug: str, session_id: int, *, countdown: float = 0) -> bool:
    """Send `resume_session`: a parked session got a slot, or its wait is over."""
    try:
        _send(
            RESUME_SESSION,
            kwargs={"tenant": tenant_slug, "session_id": session_id},
            countdown=countdown or None,
        )
    except Exception:
        log.warning("broker unreachable: session %s waits for the reaper", session_id)
        _mark_pending(session_id=session_id)
        return False
    return True


def dispatch_reply(tenant_slug: str, turn_id: int) -> bool:
    """Send `deliver_reply` for a finished turn's channel answer. False if the broker refused."""
    try:
        _send(DELIVER_REPLY, kwargs={"tenant": tenant_slug, "turn_id": turn_id})
    except Exception:
        log.warning("broker unreachable: the reply of turn %s waits for the reaper", turn_id)
        return False
    return True


def mark_dispatched(session_ids: list[int]) -> None:
    Turn.objects.filter(session_id__in=session_ids, status="queued").update(
        dispatch_pending=False, dispatched_at=timezone.now()
    )


def restore_stranded_messages(batch: int) -> None:
    """Requeue the Redis transport's reserved messages older than its visibility timeout."""
    with app.connection_for_write() as connection:
        if connection.transport.driver_type != "redis":
            return  # other brokers redeliver a dead consumer's messages themselves
        channel = connection.default_channel
        channel.qos.restore_visible(num=batch, interval=1)
