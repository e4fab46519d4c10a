"""Cron jobs: messages sent to an agent on a schedule, and the history of their runs.

The CronJob row is the truth and django-celery-beat's PeriodicTask its mirror, rewritten
in the same transaction on every create, change, pause and delete. Beat's
DatabaseScheduler reloads its table when `PeriodicTasks` says it changed, and sends
`agents.fire_cron_job` to the tenant's queue; a run sends the message through
`submit_message` like any other client. A job with a `delivery` has each run's answer
posted to a Slack or Discord channel by the channel code (agents.channels.delivery).
"""

from __future__ import annotations

import functools
import json
import math
import zoneinfo
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise

from celery.schedules import crontab
from croniter import CroniterError, croniter
from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    PeriodicTasks,
)

from beamclaw.errors import DomainError, InvalidInput, NotFound, TooLarge
from tenants.models import Tenant

from .channels.delivery import channel_target
from .models import (
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
from .services import parse_session_key, submit_message

FIRE_TASK = "agents.fire_cron_job"
SOURCE = "cron"  # the source of a run's turns
DELIVERY_FIELDS = ("binding", "channel", "thread_ts")
NEXT_RUNS = 5
EVERY_SECONDS_MAX = 366 * 24 * 3600

# Cron's five fields, in order, as celery's crontab() names them.
CRON_FIELDS = (
    ("minute", "minute"),
    ("hour", "hour"),
    ("day of month", "day_of_month"),
    ("month", "month_of_year"),
    ("day of week", "day_of_week"),
)


# --- Schedules ------------------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """Exactly one of `cron` (with its `timezone`), `every_seconds` or `at` is set."""

    cron: str = ""
    timezone: str = ""
    every_seconds: int | None = None
    at: datetime | None = None

    @classmethod
    def of(cls, job: CronJob) -> Schedule:
        return cls(job.cron, job.timezone, job.every_seconds, job.at)

    def apply_to(self, job: CronJob) -> None:
        job.cron, job.timezone = self.cron, self.timezone
        job.every_seconds, job.at = self.every_seconds, self.at


def _invalid(message: str) -> InvalidInput:
    return InvalidInput("invalid_schedule", message)


@functools.cache
def _time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def check_schedule(
    *,
    cron: str | None = None,
    timezone: str | None = None,
    every_seconds: int | None = None,
    at: datetime | None = None,
) -> Schedule:
    """The schedule, normalised; an `invalid_schedule` InvalidInput says what is wrong."""
    kinds = {"cron": cron, "every_seconds": every_seconds, "at": at}
    given = [name for name, value in kinds.items() if value]
    if len(given) != 1:
        raise _invalid(
            "Give exactly one schedule: 'cron' (with an optional 'timezone'), "
            f"'every_seconds' or 'at'; got {' and '.join(given) if given else 'none'}."
        )
    if timezone and not cron:
        raise _invalid("'timezone' only applies to a 'cron' schedule.")
    if cron:
        zone = timezone or "UTC"
        if zone not in _time_zones():
            raise _invalid(
                f"Unknown time zone '{zone}'; use an IANA name such as 'Europe/Paris' or 'UTC'."
            )
        return Schedule(cron=_check_cron(cron), timezone=zone)
    if every_seconds:
        if not 1 <= every_seconds <= EVERY_SECONDS_MAX:
            raise _invalid(f"'every_seconds' must be between 1 and {EVERY_SECONDS_MAX}.")
        return Schedule(every_seconds=every_seconds)
    return Schedule(at=at)


def _check_frequency(schedule: Schedule, tenant: Tenant) -> None:
    """A recurring schedule may not fire more often than the tenant's minimum interval."""
    minimum = tenant.min_cron_interval_seconds
    if schedule.every_seconds is not None and schedule.every_seconds < minimum:
        message = f"'every_seconds' must be at least {minimum}"
    elif schedule.cron and (shortest := _shortest_cron_gap_seconds(schedule.cron)) < minimum:
        message = f"'{schedule.cron}' fires {shortest} s apart; the least is {minimum} s"
    else:
        return  # a one-off fires once
    raise InvalidInput(
        "schedule_too_frequent",
        f"{message}: your tenant's minimum time between two runs of a job.",
        details={"min_cron_interval_seconds": minimum},
    )


def _shortest_cron_gap_seconds(expression: str) -> int:
    """The least time between two firings of a valid five-field expression: a minute or more.

    Read from the minute and hour fields, assuming the next day fires too, so an expression
    that skips days can come out shorter than it is, never longer.
    """
    (minutes, hours, *_), _ = croniter.expand(expression)
    minutes = range(60) if "*" in minutes else minutes
    hours = range(24) if "*" in hours else hours
    times = sorted(hour * 60 + minute for hour in hours for minute in minutes)
    gaps = [b - a for a, b in pairwise(times)] + [24 * 60 - times[-1] + times[0]]
    return min(gaps) * 60


def _check_room_for_a_job(tenant: Tenant) -> None:
    limit = tenant.max_cron_jobs
    if CronJob.objects.filter(tenant=tenant).count() >= limit:
        raise InvalidInput(
            "cron_job_limit_reached",
            f"The tenant has reached its limit of {limit} cron jobs; delete one or ask for "
            "a higher limit.",
            details={"max_cron_jobs": limit},
        )


def _check_cron(expression: str) -> str:
    """A five-field expression both celery-beat (which fires it) and croniter accept."""
    fields = expression.split()
    if len(fields) != len(CRON_FIELDS):
        raise _invalid(
            f"'{expression}' is not a cron expression: it needs 5 fields "
            f"(minute hour day-of-month month day-of-week), not {len(fields)}."
        )
    for (label, name), value in zip(CRON_FIELDS, fields, strict=True):
        try:
            crontab(**{name: value})
        except (ValueError, TypeError) as error:
            reason = str(error)
            if "literal" in reason:  # celery calls every unknown word a weekday
                reason = "use numbers, '*', ranges (1-5), lists (1,15) and steps (*/10)."
            if name == "day_of_week":
                reason += " Sunday is 0, Saturday 6."
            raise _invalid(f"Invalid cron expression '{expression}': {label} '{value}': {reason}")
    if fields[2] != "*" and fields[4] != "*":
        # Cron runs on days matching either field; celery-beat only on days matching both.
        raise _invalid(
            f"Invalid cron expression '{expression}': give a day of month or a day of week, "
            "not both."
        )
    try:
        crontab(*fields[:2], day_of_month=fields[2], month_of_year=fields[3], day_of_week=fields[4])
    except (ValueError, TypeError) as error:
        raise _invalid(f"Invalid cron expression '{expression}': {error}")
    normalised = " ".join(fields)
    if not croniter.is_valid(normalised):
        raise _invalid(f"Invalid cron expression '{expression}'.")
    return normalised


def next_runs(job: CronJob, *, count: int = NEXT_RUNS, now: datetime | None = None) -> list:
    """When the job fires next (none while it is paused); computed, not read from beat."""
    if not job.enabled:
        return []
    now = now or timezone.now()
    kind = job.schedule_kind
    if kind == CronScheduleKind.CRON:
        found = []
        try:
            times = croniter(job.cron, now.astimezone(zoneinfo.ZoneInfo(job.timezone)))
            for _ in range(count):
                found.append(times.get_next(datetime))
        except CroniterError:  # e.g. a date that never comes again
            pass
        return found
    if kind == CronScheduleKind.EVERY:
        step = timedelta(seconds=job.every_seconds)
        periods = max(1, math.ceil((now - job.anchor_at) / step))
        first = job.anchor_at + step * periods
        return [first + step * i for i in range(count)]
    return [job.at] if job.at and job.at > now else []


# --- The beat mirror ------------------------------------------------------------------


def beat_entry_name(job: CronJob) -> str:
    return f"cron-job-{job.pk}"


def _mirror(job: CronJob, *, reset: bool) -> PeriodicTask:
    """Write the job's PeriodicTask in the caller's transaction.

    `reset` (a new schedule, or resuming) drops beat's memory of past runs, so an
    interval counts from now and a one-off fires again.
    """
    task = job.periodic_task or PeriodicTask(name=beat_entry_name(job))
    old_clocked_id = task.clocked_id
    task.task = FIRE_TASK
    task.kwargs = json.dumps({"tenant": job.tenant.slug, "cron_job_id": job.pk})
    task.description = f"BeamClaw cron job {job.pk} of tenant {job.tenant.slug}"
    task.enabled = job.enabled
    task.interval = task.crontab = task.clocked = None
    task.one_off = False
    kind = job.schedule_kind
    if kind == CronScheduleKind.CRON:
        minute, hour, day_of_month, month_of_year, day_of_week = job.cron.split()
        spec = {
            "minute": minute,
            "hour": hour,
            "day_of_month": day_of_month,
            "month_of_year": month_of_year,
            "day_of_week": day_of_week,
            "timezone": job.timezone,
        }
        task.crontab = CrontabSchedule.objects.filter(
            **spec
        ).first() or CrontabSchedule.objects.create(**spec)
    elif kind == CronScheduleKind.EVERY:
        spec = {"every": job.every_seconds, "period": IntervalSchedule.SECONDS}
        task.interval = IntervalSchedule.objects.filter(
            **spec
        ).first() or IntervalSchedule.objects.create(**spec)
    else:
        # A clocked row of its own: it goes when the job goes or changes its time.
        clocked = ClockedSchedule.objects.filter(pk=old_clocked_id).first()
        if clocked is None:
            clocked = ClockedSchedule(clocked_time=job.at)
        clocked.clocked_time = job.at
        clocked.save()
        task.clocked = clocked
        task.one_off = True
    if reset:
        task.last_run_at = None
        task.total_run_count = 0
    task.save()  # its save signal stamps PeriodicTasks, which is how beat notices
    if job.periodic_task_id != task.pk:
        job.periodic_task = task
        CronJob.objects.filter(pk=job.pk).update(periodic_task=task)
    if old_clocked_id and old_clocked_id != task.clocked_id:
        ClockedSchedule.objects.filter(pk=old_clocked_id, periodictask__isnull=True).delete()
    # Stamp again after commit: a stamp taken inside a transaction that commits after
    # beat has read a newer one would go unnoticed until beat's 5-minute full reload.
    transaction.on_commit(PeriodicTasks.update_changed)
    return task


def drop_beat_entry(periodic_task_id: int | None) -> None:
    """Delete a job's PeriodicTask (and its one-off clock); called when the job is deleted."""
    if periodic_task_id is None:
        return
    task = PeriodicTask.objects.filter(pk=periodic_task_id).first()
    if task is None:
        return
    clocked_id = task.clocked_id
    task.delete()
    if clocked_id:
        ClockedSchedule.objects.filter(pk=clocked_id, periodictask__isnull=True).delete()
    transaction.on_commit(PeriodicTasks.update_changed)


# --- Services -------------------------------------------------------------------------

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


def _locked(job: CronJob) -> CronJob:
    """The job's current row, locked until the transaction ends (runs and edits queue)."""
    return (
        CronJob.objects.select_for_update(of=("self",))
        .select_related("tenant", "agent")
        .get(pk=job.pk)
    )


def _agent(tenant: Tenant, slug: str) -> Agent:
    agent = Agent.objects.filter(tenant=tenant, slug=slug, deleted_at__isnull=True).first()
    if agent is None:
        raise InvalidInput("agent_not_found", f"There is no agent '{slug}'.")
    return agent


def _check_message(message: str) -> None:
    if not message or not message.strip():
        raise InvalidInput("empty_content", "The message is empty.")
    if len(message.encode()) > settings.MESSAGE_MAX_BYTES:
        raise TooLarge(
            "content_too_large",
            f"The message is over {settings.MESSAGE_MAX_BYTES} bytes.",
            details={"max_bytes": settings.MESSAGE_MAX_BYTES},
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


def _check_due(job: CronJob, now: datetime) -> None:
    """A one-off job that is (re)scheduled or resumed must still have its time ahead."""
    if job.enabled and job.schedule_kind == CronScheduleKind.ONCE and job.at <= now:
        raise _invalid(f"The time {job.at.isoformat()} is in the past; give a later 'at'.")


def validate_cron_job(job: CronJob, *, rescheduled: bool) -> None:
    """Everything a job must satisfy before it is saved (the admin form calls this too)."""
    schedule = check_schedule(
        cron=job.cron, timezone=job.timezone, every_seconds=job.every_seconds, at=job.at
    )
    _check_message(job.message)
    _check_session_key(job.session_key, job.agent)
    if job.agent is not None and job.agent.tenant_id != job.tenant_id:
        raise InvalidInput("agent_not_found", f"There is no agent '{job.agent.slug}'.")
    if job.pk is None:
        _check_room_for_a_job(job.tenant)
    if rescheduled:
        # Only a new, changed or resumed schedule: a job the tenant's limits have since
        # outgrown keeps running until someone changes it.
        _check_frequency(schedule, job.tenant)
        _check_due(job, timezone.now())


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
        _mirror(job, reset=rescheduled)
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
        agent=_agent(tenant, agent),
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
            job.agent = _agent(job.tenant, changes.pop("agent"))
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
            _mirror(job, reset=False)
    return run


# --- Selectors ------------------------------------------------------------------------


def cron_jobs_of(tenant: Tenant) -> QuerySet[CronJob]:
    return CronJob.objects.filter(tenant=tenant).select_related("tenant", "agent")


def get_cron_job(tenant: Tenant, job_id: int) -> CronJob:
    job = cron_jobs_of(tenant).filter(pk=job_id).first()
    if job is None:
        raise NotFound("cron_job_not_found", f"There is no cron job {job_id}.")
    return job


def runs_of(job: CronJob) -> QuerySet[CronRun]:
    return CronRun.objects.filter(job=job).select_related("turn", "turn__channel_delivery")
