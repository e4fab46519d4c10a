"""Thin Celery tasks: load ids, call the runtime.

Both carry `tenant` (the slug) explicitly: it routes them to `tenant.<slug>`, and a task
only ever touches rows of the tenant it names.
"""

from __future__ import annotations

from celery import shared_task

from agents.models import Session, Turn
from agents.runtime import reaper
from agents.runtime.loop import run_session


@shared_task(name="agents.run_turn")
def run_turn(*, tenant: str, turn_id: int) -> None:
    """Run the turn's session (this turn and any queued before it), in order."""
    row = (
        Turn.objects.filter(pk=turn_id, tenant__slug=tenant)
        .values_list("tenant_id", "session_id")
        .first()
    )
    if row is not None:
        run_session(*row)


@shared_task(name="agents.resume_session")
def resume_session(*, tenant: str, session_id: int) -> None:
    """Run a session that waited for a tenant limit (a concurrency slot, the request rate)."""
    row = (
        Session.objects.filter(pk=session_id, tenant__slug=tenant)
        .values_list("tenant_id", "id")
        .first()
    )
    if row is not None:
        run_session(*row)


@shared_task(name="agents.reap_stale_turns")
def reap_stale_turns() -> dict:
    """celery-beat runs this every REAPER_INTERVAL_SECONDS (see beamclaw.celery)."""
    report = reaper.reap_stale_turns()
    return {"running": report.redispatched_running, "queued": report.redispatched_queued}
