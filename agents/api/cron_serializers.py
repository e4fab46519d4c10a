"""Input and output shapes of the cron-jobs API."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from agents.cron.schedules import EVERY_SECONDS_MAX, next_runs
from agents.cron.services import DELIVERY_FIELDS
from agents.models import (
    ChannelDelivery,
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
        help_text="Five-field cron expression, e.g. '0 9 * * 1-5' (Sunday is 0). It fires "
        "at most once a minute; two firings closer than your tenant's "
        "`min_cron_interval_seconds` are `schedule_too_frequent`.",
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
        help_text="Run every N seconds; at least your tenant's `min_cron_interval_seconds` "
        "(60 by default, see GET /api/v1/tenant), else `schedule_too_frequent`.",
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


class CronDeliverySerializer(serializers.Serializer):
    """Where each run's answer is posted: a channel, by the bot of one of your channel
    bindings. The binding must have a bot token, and the ids must fit its kind."""

    # The shape only: agents.cron.services.check_delivery checks the binding and the ids.

    binding = serializers.IntegerField(
        min_value=1,
        help_text="The id of one of your channel bindings (Slack or Discord); its bot "
        "token posts the answer.",
    )
    channel = serializers.CharField(
        max_length=100,
        help_text="The channel id to post in. Slack: C..., G... or D... (invite the app "
        "to the channel). Discord: the channel's (or thread's) id, a number.",
    )
    thread_ts = serializers.CharField(
        required=False,
        allow_null=True,
        allow_blank=True,
        max_length=32,
        help_text="Slack only: post as replies in this thread (the parent message's ts). "
        "Null or absent: a new message in the channel.",
    )

    def to_representation(self, delivery: dict) -> dict:
        return {name: delivery.get(name) for name in DELIVERY_FIELDS}


class CronRunDeliverySerializer(serializers.ModelSerializer):
    """How posting the run's answer went (a ChannelDelivery)."""

    binding = serializers.IntegerField(source="binding_id", read_only=True)
    channel = serializers.SerializerMethodField()
    status = serializers.ChoiceField(
        choices=["pending", "delivered", "failed"],
        read_only=True,
        help_text="pending: the turn is running or a retry is due; delivered; failed: "
        "given up (see `error`).",
    )
    error = serializers.CharField(
        source="last_error",
        read_only=True,
        help_text="The last attempt's error ('slack: channel_not_found', 'discord: HTTP "
        "403 ...'); empty when there was none.",
    )

    class Meta:
        model = ChannelDelivery
        fields = [
            "binding",
            "channel",
            "status",
            "attempts",
            "parts_sent",
            "delivered_at",
            "failed_at",
            "error",
        ]
        read_only_fields = fields

    def get_channel(self, delivery: ChannelDelivery) -> str:
        """The channel id it goes to."""
        target = delivery.target
        return str(target.get("channel") or target.get("channel_id") or "")


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
    delivery = CronDeliverySerializer(
        required=False,
        allow_null=True,
        help_text="Post each run's answer (or, if the turn fails, a one-line note) to a "
        "Slack or Discord channel; null (the default) for no posting.",
    )


class CronJobSerializer(serializers.ModelSerializer):
    agent = serializers.SlugRelatedField(slug_field="slug", read_only=True, allow_null=True)
    session_key = serializers.SerializerMethodField()
    schedule = ScheduleSerializer(source="*", read_only=True)
    delivery = CronDeliverySerializer(
        read_only=True,
        allow_null=True,
        help_text="The channel each run's answer is posted to, or null; each run's "
        "`delivery` in the history says how posting went.",
    )
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
        return [field.to_representation(when) for when in next_runs(job)]


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
    delivery = serializers.SerializerMethodField()

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
            "delivery",
            "created_at",
        ]

    def get_session_key(self, run: CronRun) -> str | None:
        return run.session_key or None

    @extend_schema_field(
        CronRunDeliverySerializer(
            allow_null=True,
            help_text="How posting the answer to the job's channel went; null when the run "
            "posts nothing (the job has no delivery, or the run started no turn or could "
            "not be delivered: `detail` says why).",
        )
    )
    def get_delivery(self, run: CronRun) -> dict | None:
        delivery = getattr(run.turn, "channel_delivery", None) if run.turn else None
        return CronRunDeliverySerializer(delivery).data if delivery else None
