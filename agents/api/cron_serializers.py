"""Input and output shapes of the cron-jobs API."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from agents import cron
from agents.cron import EVERY_SECONDS_MAX
from agents.models import (
    CronJob,
    CronOutcome,
    CronRun,
    CronScheduleKind,
    CronTrigger,
    TurnStatus,
)

from .serializers import StrictCharField


class ScheduleSerializer(serializers.Serializer):
    """Exactly one of `cron`, `every_seconds` or `at`."""

    kind = serializers.ChoiceField(choices=CronScheduleKind.choices, read_only=True)
    cron = serializers.CharField(
        required=False,
        allow_null=True,
        max_length=200,
        help_text="Five-field cron expression, e.g. '0 9 * * 1-5' (Sunday is 0).",
    )
    timezone = serializers.CharField(
        required=False,
        allow_null=True,
        max_length=64,
        help_text="IANA time zone the cron expression is read in, e.g. 'Europe/Paris'; "
        "UTC by default.",
    )
    every_seconds = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=EVERY_SECONDS_MAX,
        help_text="Run every N seconds.",
    )
    at = serializers.DateTimeField(
        required=False, allow_null=True, help_text="Run once, at this time (ISO 8601)."
    )

    def to_representation(self, job: CronJob) -> dict:
        return {
            "kind": job.schedule_kind,
            "cron": job.cron or None,
            "timezone": job.timezone or None,
            "every_seconds": job.every_seconds,
            "at": serializers.DateTimeField().to_representation(job.at) if job.at else None,
        }


class CronJobInputSerializer(serializers.Serializer):
    name = serializers.CharField(required=False, allow_blank=True, max_length=200)
    agent = serializers.SlugField(max_length=63, help_text="The slug of the agent to message.")
    session_key = serializers.CharField(
        required=False,
        allow_null=True,
        max_length=300,
        help_text="Send every run to this session ('agent:<slug>:<name>'); null (the "
        "default) for a fresh session per run, 'agent:<slug>:cron:<job-id>:<run-n>'.",
    )
    message = StrictCharField(
        allow_blank=True, trim_whitespace=False, help_text="What the agent is sent on each run."
    )
    schedule = ScheduleSerializer()
    enabled = serializers.BooleanField(
        required=False, help_text="False pauses the job; true by default."
    )
    delivery = serializers.JSONField(
        required=False,
        allow_null=True,
        help_text="Where the reply also goes (a channel binding), or null.",
    )

    def validate_delivery(self, value):
        if value is not None and not isinstance(value, dict):
            raise serializers.ValidationError("Give an object or null.")
        return value


class CronJobSerializer(serializers.ModelSerializer):
    agent = serializers.SlugRelatedField(slug_field="slug", read_only=True, allow_null=True)
    session_key = serializers.SerializerMethodField()
    schedule = ScheduleSerializer(source="*", read_only=True)
    delivery = serializers.JSONField(read_only=True, allow_null=True)
    next_runs = serializers.SerializerMethodField()

    class Meta:
        model = CronJob
        fields = [
            "id",
            "name",
            "agent",
            "session_key",
            "message",
            "schedule",
            "enabled",
            "delivery",
            "next_runs",
            "run_count",
            "created_at",
            "updated_at",
        ]

    def get_session_key(self, job: CronJob) -> str | None:
        """null: every run gets a fresh session, 'agent:<slug>:cron:<job-id>:<run-n>'."""
        return job.session_key or None

    @extend_schema_field(serializers.ListField(child=serializers.DateTimeField()))
    def get_next_runs(self, job: CronJob) -> list[str]:
        """The next five run times (none while the job is paused)."""
        field = serializers.DateTimeField()
        return [field.to_representation(when) for when in cron.next_runs(job)]


class CronRunSerializer(serializers.ModelSerializer):
    trigger = serializers.ChoiceField(choices=CronTrigger.choices)
    outcome = serializers.ChoiceField(choices=CronOutcome.choices)
    session_key = serializers.SerializerMethodField()
    turn_id = serializers.IntegerField(read_only=True, allow_null=True)
    # A plain string: an enum here would be a second name for the turn's StatusEnum.
    turn_status = serializers.CharField(
        source="turn.status",
        read_only=True,
        allow_null=True,
        help_text=f"The turn's status now: {', '.join(TurnStatus.values)}.",
    )

    class Meta:
        model = CronRun
        fields = [
            "id",
            "number",
            "trigger",
            "outcome",
            "detail",
            "session_key",
            "turn_id",
            "turn_status",
            "created_at",
        ]

    def get_session_key(self, run: CronRun) -> str | None:
        return run.session_key or None
