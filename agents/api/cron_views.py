"""The cron-jobs API: scheduled messages to an agent, "run now", and each job's run history."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.response import Response
from rest_framework.views import APIView

from agents.cron import schedules, selectors, services
from agents.models import CronTrigger
from beamclaw.api.validation import validated
from beamclaw.errors import InvalidInput
from tenants.api.auth import request_tenant

from .cron_serializers import CronJobInputSerializer, CronJobSerializer, CronRunSerializer

INVALID = OpenApiResponse(
    description="`invalid_schedule` (a bad cron expression or time zone, or not exactly one "
    "schedule kind), `schedule_too_frequent` (two runs closer than your tenant's "
    "`min_cron_interval_seconds`), `cron_job_limit_reached` (you have `max_cron_jobs` "
    "jobs already), `invalid_session_key`, `empty_content`, "
    "`channel_binding_not_found` (the delivery's binding is not one of yours), "
    "`invalid_delivery` (no channel, an id that does not fit the binding's kind, a binding "
    "without a bot token) or `validation_error`; `error.message` says what is wrong."
)
NOT_FOUND = OpenApiResponse(description="`cron_job_not_found`: no such job in your tenant.")
JOB_OR_AGENT_NOT_FOUND = OpenApiResponse(
    description="`cron_job_not_found`: no such job in your tenant; `agent_not_found`: the "
    "new `agent` is not one of your agents."
)
AGENT_NOT_FOUND = OpenApiResponse(description="`agent_not_found`: no such agent in your tenant.")


# A malformed nested object gets the code a bad value in it gets from agents.cron.
NESTED_CODES = {"schedule": "invalid_schedule", "delivery": "invalid_delivery"}


def _parsed(serializer: CronJobInputSerializer) -> dict:
    """The validated input; a malformed `schedule` is `invalid_schedule` like a bad value,
    and a malformed `delivery` is `invalid_delivery`."""
    if not serializer.is_valid():
        for field, code in NESTED_CODES.items():
            if field not in serializer.errors:
                continue
            errors = serializer.errors[field]
            if isinstance(errors, dict):
                text = "; ".join(f"{name}: {' '.join(map(str, e))}" for name, e in errors.items())
            else:
                text = " ".join(map(str, errors))
            raise InvalidInput(code, f"{field}: {text}", details=serializer.errors)
    return validated(serializer)


def _changes(data: dict) -> dict:
    """The input as `agents.cron.services` takes it."""
    changes = dict(data)
    if "session_key" in changes:
        changes["session_key"] = changes["session_key"] or ""
    if "schedule" in changes:
        changes["schedule"] = schedules.check_schedule(**changes["schedule"])
    return changes


class CronJobListView(generics.ListAPIView):
    """Your cron jobs, newest first, or schedule a new one."""

    serializer_class = CronJobSerializer

    def get_queryset(self):
        return selectors.cron_jobs_of(request_tenant(self.request))

    @extend_schema(
        request=CronJobInputSerializer,
        responses={201: CronJobSerializer, 400: INVALID, 404: AGENT_NOT_FOUND},
    )
    def post(self, request):
        changes = _changes(_parsed(CronJobInputSerializer(data=request.data)))
        job = services.create_cron_job(tenant=request_tenant(request), **changes)
        return Response(CronJobSerializer(job).data, status=status.HTTP_201_CREATED)


class CronJobDetailView(APIView):
    """Read, change (PATCH; `enabled: false` pauses) or delete a cron job."""

    @extend_schema(responses={200: CronJobSerializer, 404: NOT_FOUND})
    def get(self, request, job_id: int):
        job = selectors.get_cron_job(request_tenant(request), job_id)
        return Response(CronJobSerializer(job).data)

    @extend_schema(
        request=CronJobInputSerializer(partial=True),
        responses={200: CronJobSerializer, 400: INVALID, 404: JOB_OR_AGENT_NOT_FOUND},
    )
    def patch(self, request, job_id: int):
        job = selectors.get_cron_job(request_tenant(request), job_id)
        data = _parsed(CronJobInputSerializer(data=request.data, partial=True))
        job = services.update_cron_job(job=job, **_changes(data))
        return Response(CronJobSerializer(job).data)

    @extend_schema(responses={204: None, 404: NOT_FOUND})
    def delete(self, request, job_id: int):
        services.delete_cron_job(job=selectors.get_cron_job(request_tenant(request), job_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class CronJobRunView(APIView):
    """Run the job now (paused or not): sends its message and answers with the run."""

    @extend_schema(
        request=None,
        responses={
            202: OpenApiResponse(
                CronRunSerializer,
                description="The run; `outcome` is `submitted` (see `turn_id`), `skipped` or "
                "`failed`, with `detail` saying why.",
            ),
            404: NOT_FOUND,
        },
    )
    def post(self, request, job_id: int):
        job = selectors.get_cron_job(request_tenant(request), job_id)
        run = services.run_cron_job(job=job, trigger=CronTrigger.MANUAL)
        return Response(CronRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)


class CronJobRunsView(generics.ListAPIView):
    """The job's runs, newest first: when, the turn, the outcome and why."""

    serializer_class = CronRunSerializer

    def get_queryset(self):
        job = selectors.get_cron_job(request_tenant(self.request), self.kwargs["job_id"])
        return selectors.runs_of(job)
