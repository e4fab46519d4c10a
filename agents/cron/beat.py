"""The beat mirror: each CronJob's django-celery-beat PeriodicTask, written in the
transaction that writes the job, and dropped with it."""

from __future__ import annotations

import json

from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    PeriodicTasks,
)

from agents.models import CronJob, CronScheduleKind

FIRE_TASK = "agents.fire_cron_job"


def beat_entry_name(job: CronJob) -> str:
    return f"cron-job-{job.pk}"


def mirror(job: CronJob, *, reset: bool) -> PeriodicTask:
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


@receiver(post_delete, sender=CronJob, dispatch_uid="agents.cron_job.drop_beat_entry")
def _drop_beat_entry(sender, instance: CronJob, **kwargs) -> None:
    """However a job is deleted (API, admin, its tenant's cascade), its beat entry goes too."""
    drop_beat_entry(instance.periodic_task_id)
