"""The reaper: the safety net that makes sure every accepted turn runs.

The Turn row is the truth and a Celery message only a trigger, so whatever was lost —
a worker killed mid-turn, a Redis restart that emptied the queues, a broker that was
down at submission — shows up in the Turn table and is re-triggered here:

- a `running` turn whose session lease has been gone for TURN_LEASE_GRACE_SECONDS: its
  worker died (a live worker re-creates a lease lost in a Redis restart within one
  renewal period). The re-run resumes from the last saved step; after TURN_MAX_ATTEMPTS
  it fails with `worker_lost` and the session moves on;
- a `queued` turn whose trigger could not be sent, or that has waited
  TURN_REDISPATCH_AFTER_SECONDS while nobody holds its session;
- a `waiting` turn whose sub-agents have all ended but whose wake-up was lost;
- a channel reply (ChannelDelivery) that became due when its turn ended but was not
  posted TURN_REDISPATCH_AFTER_SECONDS later: its trigger was lost (the worker died
  right after the turn's commit, the broker was down) or its retry is overdue.

It also puts back Celery messages a killed worker had reserved but not started (they
sit in the Redis transport's `unacked` set): kombu sweeps them only when a worker starts
consuming, so without another start they would stay there. Their turns ran long ago (the
reaper re-dispatched them); a message that comes back finds its turn done or its
session's lease held, and does nothing.

Re-sending a trigger is always safe: the lease and the fence let one worker run a session.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from agents.models import ACTIVE_STATUSES, ChannelDelivery, Turn, TurnStatus
from beamclaw.redis import get_redis, key

from .dispatch import (
    dispatch_reply,
    dispatch_session,
    mark_dispatched,
    restore_stranded_messages,
)
from .lease import lease_key

log = logging.getLogger(__name__)

BATCH = 500


@dataclass
class ReapReport:
    redispatched_running: list[int] = field(default_factory=list)  # turn ids
    redispatched_queued: list[int] = field(default_factory=list)  # session ids
    redispatched_replies: list[int] = field(default_factory=list)  # turn ids


def _suspects_key() -> str:
    return key("reaper", "lease-missing-since")


def _sessions_without_lease(rows: list[tuple[int, int, int, str]]) -> list[tuple]:
    """The (turn, tenant, session, slug) rows whose session lease is not held now."""
    if not rows:
        return []
    pipe = get_redis().pipeline(transaction=False)
    for _, tenant_id, session_id, _ in rows:
        pipe.exists(lease_key(tenant_id, session_id))
    return [row for row, held in zip(rows, pipe.execute(), strict=True) if not held]


def _reap_running(report: ReapReport) -> None:
    rows = list(
        Turn.objects.filter(status=TurnStatus.RUNNING)
        .order_by("id")
        .values_list("id", "tenant_id", "session_id", "tenant__slug")[:BATCH]
    )
    client = get_redis()
    suspects = _suspects_key()
    orphaned = {row[0]: row for row in _sessions_without_lease(rows)}
    now_ms = int(time.time() * 1000)
    grace_ms = settings.TURN_LEASE_GRACE_SECONDS * 1000
    first_seen = dict(
        zip(orphaned, client.hmget(suspects, list(orphaned)) if orphaned else [], strict=True)
    )
    pipe = client.pipeline(transaction=False)
    for turn_id, (_, _, session_id, slug) in orphaned.items():
        since = first_seen.get(turn_id)
        if since is None:
            pipe.hset(suspects, turn_id, now_ms)
        elif now_ms - int(since) >= grace_ms:
            if dispatch_session(slug, session_id):
                report.redispatched_running.append(turn_id)
            pipe.hdel(suspects, turn_id)
    # Forget suspects that have a lease again or are no longer running.
    known = {str(turn_id) for turn_id in orphaned}
    stale = [s for s in client.hkeys(suspects) if s not in known]
    if stale:
        pipe.hdel(suspects, *stale)
    pipe.pexpire(suspects, 24 * 3600 * 1000)
    pipe.execute()


def _reap_queued(report: ReapReport) -> None:
    cutoff = timezone.now() - timedelta(seconds=settings.TURN_REDISPATCH_AFTER_SECONDS)
    waiting = (
        Turn.objects.filter(status=TurnStatus.QUEUED)
        .annotate(last_sent=Coalesce("dispatched_at", "created_at"))
        .filter(Q(dispatch_pending=True) | Q(last_sent__lt=cutoff))
        .order_by("id")
        .values_list("id", "tenant_id", "session_id", "tenant__slug")
    )
    # One trigger per session is enough: it runs all of the session's queued turns.
    by_session: dict[int, tuple] = {}
    for row in waiting[: BATCH * 4]:
        by_session.setdefault(row[2], row)
        if len(by_session) >= BATCH:
            break
    sent = [
        session_id
        for _, _, session_id, slug in _sessions_without_lease(list(by_session.values()))
        if dispatch_session(slug, session_id)
    ]
    if sent:
        mark_dispatched(sent)
        report.redispatched_queued.extend(sent)


def _reap_waiting(report: ReapReport) -> None:
    """A parent whose sub-agents all ended but whose wake-up was lost."""
    parents = (
        Turn.objects.filter(status=TurnStatus.WAITING)
        .exclude(children__status__in=ACTIVE_STATUSES)
        .values_list("id", "session_id", "tenant__slug")[:BATCH]
    )
    for turn_id, session_id, slug in parents:
        woken = Turn.objects.filter(pk=turn_id, status=TurnStatus.WAITING).update(
            status=TurnStatus.QUEUED
        )
        if woken and dispatch_session(slug, session_id):
            report.redispatched_queued.append(session_id)


def _reap_replies(report: ReapReport) -> None:
    """Channel replies that are due but whose trigger never ran (or ran and died)."""
    now = timezone.now()
    overdue = (
        ChannelDelivery.objects.filter(
            delivered_at__isnull=True,
            failed_at__isnull=True,
            next_attempt_at__lt=now - timedelta(seconds=settings.TURN_REDISPATCH_AFTER_SECONDS),
        )
        # A claimed one is being posted now; its claim expires if that worker died.
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .order_by("next_attempt_at")
        .values_list("pk", "turn_id", "turn__tenant__slug")[:BATCH]
    )
    sent = []
    for delivery_id, turn_id, slug in overdue:
        if dispatch_reply(slug, turn_id):
            sent.append(delivery_id)
            report.redispatched_replies.append(turn_id)
    if sent:
        # A duplicate trigger is harmless (the claim and `parts_sent` make posting once),
        # but waiting a full period again before the next one keeps them rare.
        ChannelDelivery.objects.filter(pk__in=sent).update(next_attempt_at=now)


def reap_stale_turns() -> ReapReport:
    report = ReapReport()
    _reap_running(report)
    _reap_waiting(report)
    _reap_queued(report)
    _reap_replies(report)
    try:
        restore_stranded_messages(BATCH)
    except Exception:  # the broker is away: next time
        log.warning("could not look for stranded messages", exc_info=True)
    if report.redispatched_running or report.redispatched_queued or report.redispatched_replies:
        log.warning(
            "reaper re-dispatched %d orphaned running turn(s) %s, %d waiting session(s) "
            "and %d channel reply(ies) %s",
            len(report.redispatched_running),
            report.redispatched_running[:20],
            len(report.redispatched_queued),
            len(report.redispatched_replies),
            report.redispatched_replies[:20],
        )
    return report
