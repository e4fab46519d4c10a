"""Creating, changing, deleting and running cron jobs; the API, the admin and the
`agents.fire_cron_job` task call these."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from agents.channels.delivery import channel_target
from agents.models import (
    Agent,
    ChannelBinding,
    ChannelDelivery,
    CronJob,
    CronOutcome,
    CronRun,
    CronScheduleKind,
    CronTrigger,
    Turn,
)
from agents.selectors import get_agent
from agents.services import check_message_content, parse_session_key, submit_message
from beamclaw.errors import DomainError, InvalidInput, NotFound
from tenants.models import Tenant

from .beat import mirror
from .schedules import Schedule, check_due, check_frequency, check_schedule

SOURCE = "cron"  # the source of a run's turns
DELIVERY_FIELDS = ("binding", "channel", "thread_ts")

# What update_cron_job takes, and the columns an edit writes (never run_count: runs own it).
CHANGEABLE = frozenset(
    {"agent", "name", "message", "session_key", "schedule", "enabled", "delivery"}
)
EDIT_FIELDS = (
    "agent",
    "name",
    "message",
    "session_key",
    "cron",
    "timezone",
    "every_seconds",
    "at",
    "enabled",
    "delivery",
    "updated_at",
)


def _check_room_for_a_job(tenant: Tenant) -> None:
    limit = tenant.max_cron_jobs
    if CronJob.objects.filter(tenant=tenant).count() >= limit:
        raise InvalidInput(
            "cron_job_limit_reached",
            f"The tenant has reached its limit of {limit} cron jobs; delete one or ask for "
            "a higher limit.",
            details={"max_cron_jobs": limit},
        )


def _locked(job: CronJob) -> CronJob:
    """The job's current row, locked until the transaction ends (runs and edits queue)."""
    return (
        CronJob.objects.select_for_update(of=("self",))
        .select_related("tenant", "agent")
        .get(pk=job.pk)
    )


def _check_session_key(session_key: str, agent: Agent | None) -> None:
    if not session_key:
        return
    slug, _ = parse_session_key(session_key)
    if agent is not None and slug != agent.slug:
        raise InvalidInput(
            "invalid_session_key",
            f"The session key is for agent '{slug}', but the job's agent is '{agent.slug}'.",
            details={"key": session_key},
        )


def _resolve_delivery(tenant: Tenant, delivery: object) -> tuple[dict, ChannelBinding, dict]:
    """The delivery normalised, its binding and the ChannelDelivery target it makes."""

    def invalid(message: str) -> InvalidInput:
        return InvalidInput("invalid_delivery", message)

    if not isinstance(delivery, dict):
        raise invalid(
            '\'delivery\' must be an object: {"binding": <id>, "channel": <channel id>}, or null.'
        )
    unknown = sorted(set(delivery) - set(DELIVERY_FIELDS))
    if unknown:
        raise invalid(f"Unknown delivery field {', '.join(map(repr, unknown))}.")
    binding_id = delivery.get("binding")
    if not isinstance(binding_id, int) or isinstance(binding_id, bool) or binding_id < 1:
        raise invalid("'binding' must be the id of one of your channel bindings.")
    channel = delivery.get("channel")
    if not isinstance(channel, str) or not channel.strip():
        raise invalid("'channel' is required: the Slack or Discord channel id to post in.")
    thread_ts = delivery.get("thread_ts") or ""
    if not isinstance(thread_ts, str):
        raise invalid("'thread_ts' must be a string, or null.")
    # Another tenant's binding reads exactly like one that does not exist.
    binding = ChannelBinding.objects.filter(pk=binding_id, tenant=tenant).first()
    if binding is None:
        raise InvalidInput(
            "channel_binding_not_found",
            f"There is no channel binding {binding_id}.",
            details={"binding": binding_id},
        )
    channel, thread_ts = channel.strip(), thread_ts.strip()
    target = channel_target(binding, channel=channel, thread_ts=thread_ts)
    normalised = {"binding": binding.pk, "channel": channel, "thread_ts": thread_ts or None}
    return normalised, binding, target


def check_delivery(*, tenant: Tenant, delivery: object) -> dict | None:
    """The delivery as it is stored, `{"binding", "channel", "thread_ts"}`, or None.

    The binding must be the tenant's (else `channel_binding_not_found`) and able to post
    to that kind of channel id (else `invalid_delivery`, saying what is wrong).
    """
    if delivery is None:
        return None
    return _resolve_delivery(tenant, delivery)[0]


def validate_cron_job(job: CronJob, *, rescheduled: bool) -> None:
    """Everything a job must satisfy before it is saved (the admin form calls this too)."""
    schedule = check_schedule(
        cron=job.cron, timezone=job.timezone, every_seconds=job.every_seconds, at=job.at
    )
    check_message_content(job.message, what="message")
    _check_session_key(job.session_key, job.agent)
    if job.agent is not None and job.agent.tenant_id != job.tenant_id:
        raise NotFound("agent_not_found", f"There is no agent '{job.agent.slug}'.")
    if job.pk is None:
        _check_room_for_a_job(job.tenant)
    if rescheduled:
        # Only a new, changed or resumed schedule: a job the tenant's limits have since
        # outgrown keeps running until someone changes it.
        check_frequency(schedule, job.tenant)
        check_due(job, timezone.now())


def save_cron_job(*, job: CronJob, rescheduled: bool) -> CronJob:
    """Validate and store the job and its beat entry in one transaction.

    `rescheduled` is true for a new job, a changed schedule or a resumed job: interval
    runs then count from now.
    """
    validate_cron_job(job, rescheduled=rescheduled)
    with transaction.atomic():
        if job.pk is None:
            # Again under the tenant's row lock, so concurrent creates cannot pass the limit.
            _check_room_for_a_job(Tenant.objects.select_for_update().get(pk=job.tenant_id))
            job.anchor_at = timezone.now()
            job.save()
        else:
            # Only what an edit may change: a run writes run_count and anchor_at
            # concurrently, and a stale copy (the admin's form) must not put them back.
            fields = list(EDIT_FIELDS)
            if rescheduled:
                job.anchor_at = timezone.now()
                fields.append("anchor_at")
            job.save(update_fields=fields)
        mirror(job, reset=rescheduled)
    return job


def create_cron_job(
    *,
    tenant: Tenant,
    agent: str,
    message: str,
    schedule: Schedule,
    session_key: str = "",
    name: str = "",
    enabled: bool = True,
    delivery: dict | None = None,
) -> CronJob:
    job = CronJob(
        tenant=tenant,
        agent=get_agent(tenant, agent),
        name=name,
        message=message,
        session_key=session_key,
        enabled=enabled,
        delivery=check_delivery(tenant=tenant, delivery=delivery),
    )
    schedule.apply_to(job)
    return save_cron_job(job=job, rescheduled=True)


def update_cron_job(*, job: CronJob, **changes) -> CronJob:
    """Change some of: agent (a slug), name, message, session_key ("" for a fresh session
    per run), schedule (a Schedule), enabled (False pauses), delivery."""
    unknown = set(changes) - CHANGEABLE
    if unknown:
        raise TypeError(f"cannot change {', '.join(sorted(unknown))}")
    with transaction.atomic():
        job = _locked(job)
        rescheduled = False
        if "agent" in changes:
            job.agent = get_agent(job.tenant, changes.pop("agent"))
        if "schedule" in changes:
            schedule = changes.pop("schedule")
            rescheduled = schedule != Schedule.of(job)
            schedule.apply_to(job)
        if changes.get("enabled") and not job.enabled:
            rescheduled = True  # resuming
        if "delivery" in changes:
            job.delivery = check_delivery(tenant=job.tenant, delivery=changes.pop("delivery"))
        for field, value in changes.items():
            setattr(job, field, value)
        return save_cron_job(job=job, rescheduled=rescheduled)


def delete_cron_job(*, job: CronJob) -> None:
    """Delete the job, its history and (through the model's delete hook) its beat entry."""
    with transaction.atomic():
        job.delete()


def isolated_session_key(job: CronJob, agent: Agent, number: int) -> str:
    return f"agent:{agent.slug}:cron:{job.pk}:{number}"


def _why_not(job: CronJob, trigger: str) -> str:
    """Why the job may not run now, or "" if it may."""
    if not job.tenant.is_active:
        return f"The tenant '{job.tenant.slug}' is suspended."
    if job.agent is None:
        return "The job's agent was deleted."
    if job.agent.deleted_at is not None:
        return f"The agent '{job.agent.slug}' was deleted."
    if trigger == CronTrigger.SCHEDULE and not job.enabled:
        return "The job is paused."  # beat fired before it noticed the pause
    return ""


def _expect_delivery(job: CronJob, turn: Turn) -> str:
    """Have the turn's answer posted where the job's delivery says, once the turn ends.

    Returns a note for the run's detail when it will not be: the binding was deleted
    (or lost its bot token) since the job was saved, or the run joined a turn that
    already answers somewhere.
    """
    try:
        _, binding, target = _resolve_delivery(job.tenant, job.delivery)
    except DomainError as error:
        return f"Not delivered: {error.message}"
    # In the run's transaction, so the row is there before the turn is dispatched.
    _, created = ChannelDelivery.objects.get_or_create(
        turn=turn, defaults={"binding": binding, "target": target}
    )
    return "" if created else "Its answer is delivered where that turn's first message asked."


def run_cron_job(*, job: CronJob, trigger: str) -> CronRun:
    """Send the job's message now and record the run: submitted (with its turn), skipped
    (with why: a suspended tenant, a deleted agent, a paused job) or failed (the error).
    A job with a delivery also gets its run's answer posted there when the turn ends."""
    with transaction.atomic():
        job = _locked(job)
        now = timezone.now()
        job.run_count += 1
        changed = ["run_count"]
        run = CronRun(job=job, number=job.run_count, trigger=trigger)
        reason = _why_not(job, trigger)
        if reason:
            run.outcome, run.detail = CronOutcome.SKIPPED, reason
        else:
            run.session_key = job.session_key or isolated_session_key(job, job.agent, run.number)
            try:
                submission = submit_message(
                    tenant=job.tenant,
                    session_key=run.session_key,
                    content=job.message,
                    source=SOURCE,
                )
            except DomainError as error:
                run.outcome, run.detail = CronOutcome.FAILED, f"{error.code}: {error.message}"
            else:
                run.outcome, run.turn = CronOutcome.SUBMITTED, submission.turn
                notes = []
                if not submission.new_turn:
                    notes.append(f"Joined the queued turn {submission.turn.pk}.")
                if job.delivery is not None:
                    notes.append(_expect_delivery(job, submission.turn))
                run.detail = " ".join(note for note in notes if note)
        if trigger == CronTrigger.SCHEDULE:
            job.anchor_at = now
            changed.append("anchor_at")
            if job.schedule_kind == CronScheduleKind.ONCE and job.enabled:
                job.enabled = False  # done; beat has disabled its one-off entry too
                changed.append("enabled")
        job.save(update_fields=changed)
        run.save()
        if "enabled" in changed:
            mirror(job, reset=False)
    return run
