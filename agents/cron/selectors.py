"""Reading a tenant's cron jobs and a job's runs."""

from __future__ import annotations

from django.db.models import QuerySet

from agents.models import CronJob, CronRun
from beamclaw.errors import first_or_not_found
from tenants.models import Tenant


def cron_jobs_of(tenant: Tenant) -> QuerySet[CronJob]:
    return CronJob.objects.filter(tenant=tenant).select_related("tenant", "agent")


def get_cron_job(tenant: Tenant, job_id: int) -> CronJob:
    return first_or_not_found(
        cron_jobs_of(tenant), "cron_job_not_found", f"There is no cron job {job_id}.", pk=job_id
    )


def runs_of(job: CronJob) -> QuerySet[CronRun]:
    return CronRun.objects.filter(job=job).select_related("turn", "turn__channel_delivery")
