"""Cron job schedules: checking one (`check_schedule`), the tenant's minimum interval,
and when a job fires next."""

from __future__ import annotations

import functools
import math
import zoneinfo
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise

from celery.schedules import crontab
from croniter import CroniterError, croniter
from django.utils import timezone

from agents.models import CronJob, CronScheduleKind
from beamclaw.errors import InvalidInput
from tenants.models import Tenant

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


def invalid_schedule(message: str) -> InvalidInput:
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
        raise invalid_schedule(
            "Give exactly one schedule: 'cron' (with an optional 'timezone'), "
            f"'every_seconds' or 'at'; got {' and '.join(given) if given else 'none'}."
        )
    if timezone and not cron:
        raise invalid_schedule("'timezone' only applies to a 'cron' schedule.")
    if cron:
        zone = timezone or "UTC"
        if zone not in _time_zones():
            raise invalid_schedule(
                f"Unknown time zone '{zone}'; use an IANA name such as 'Europe/Paris' or 'UTC'."
            )
        return Schedule(cron=_check_cron(cron), timezone=zone)
    if every_seconds:
        if not 1 <= every_seconds <= EVERY_SECONDS_MAX:
            raise invalid_schedule(f"'every_seconds' must be between 1 and {EVERY_SECONDS_MAX}.")
        return Schedule(every_seconds=every_seconds)
    return Schedule(at=at)


def check_frequency(schedule: Schedule, tenant: Tenant) -> None:
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


def _check_cron(expression: str) -> str:
    """A five-field expression both celery-beat (which fires it) and croniter accept."""
    fields = expression.split()
    if len(fields) != len(CRON_FIELDS):
        raise invalid_schedule(
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
            raise invalid_schedule(
                f"Invalid cron expression '{expression}': {label} '{value}': {reason}"
            )
    if fields[2] != "*" and fields[4] != "*":
        # Cron runs on days matching either field; celery-beat only on days matching both.
        raise invalid_schedule(
            f"Invalid cron expression '{expression}': give a day of month or a day of week, "
            "not both."
        )
    try:
        crontab(*fields[:2], day_of_month=fields[2], month_of_year=fields[3], day_of_week=fields[4])
    except (ValueError, TypeError) as error:
        raise invalid_schedule(f"Invalid cron expression '{expression}': {error}")
    normalised = " ".join(fields)
    if not croniter.is_valid(normalised):
        raise invalid_schedule(f"Invalid cron expression '{expression}'.")
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


def check_due(job: CronJob, now: datetime) -> None:
    """A one-off job that is (re)scheduled or resumed must still have its time ahead."""
    if job.enabled and job.schedule_kind == CronScheduleKind.ONCE and job.at <= now:
        raise invalid_schedule(f"The time {job.at.isoformat()} is in the past; give a later 'at'.")
