"""The agents' Celery tasks: each loads ids and calls the code that does the work.

The tasks that act for one tenant carry `tenant` (the slug) explicitly: it routes them to
`tenant.<slug>`, and such a task only ever touches rows of the tenant it names. The
periodic reaper works across tenants.
"""

from __future__ import annotations

from celery import shared_task

from agents.channels import delivery
from agents.cron import beat
from agents.cron.services import run_cron_job
from agents.models import CronJob, CronTrigger, Session, Turn
from agents.runtime import dispatch, reaper
from agents.runtime.loop import run_session


@shared_task(name=dispatch.RUN_TURN)
def run_turn(*, tenant: str, turn_id: int) -> None:
    """Run the turn's session (this turn and any queued before it), in order."""
    row = (
        Turn.objects.filter(pk=turn_id, tenant__slug=tenant)
        .values_list("tenant_id", "session_id")
        .first()
    )
    if row is not None:
        run_session(row[0], tenant, row[1])


@shared_task(name=dispatch.RESUME_SESSION)
def resume_session(*, tenant: str, session_id: int) -> None:
    """Run a session that waited for a tenant limit (a concurrency slot, the request rate)."""
    row = (
        Session.objects.filter(pk=session_id, tenant__slug=tenant)
        .values_list("tenant_id", "id")
        .first()
    )
    if row is not None:
        run_session(row[0], tenant, row[1])


@shared_task(name="agents.reap_stale_turns")
def reap_stale_turns() -> dict:
    """celery-beat runs this every REAPER_INTERVAL_SECONDS (see beamclaw.celery)."""
    report = reaper.reap_stale_turns()
    return {
        "running": report.redispatched_running,
        "queued": report.redispatched_queued,
        "replies": report.redispatched_replies,
    }


@shared_task(name=beat.FIRE_TASK)
def fire_cron_job(*, tenant: str, cron_job_id: int) -> str | None:
    """celery-beat sends this when a CronJob is due (its PeriodicTask, kept by agents.cron.beat)."""
    job = CronJob.objects.filter(pk=cron_job_id, tenant__slug=tenant).first()
    if job is None:  # deleted since beat sent this
        return None
    return run_cron_job(job=job, trigger=CronTrigger.SCHEDULE).outcome


@shared_task(name=dispatch.DELIVER_REPLY, bind=True, max_retries=None)
def deliver_reply(self, *, tenant: str, turn_id: int) -> str:
    """Post a finished channel turn's answer (sent when the turn ends, or by the reaper)."""
    outcome = delivery.deliver_reply(tenant_slug=tenant, turn_id=turn_id)
    if outcome.retry_in is not None:
        # The attempt count lives on the ChannelDelivery row, which decides when to stop.
        raise self.retry(countdown=outcome.retry_in)
    return outcome.status
