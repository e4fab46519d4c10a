"""Serializers of the tenant API: the caller's tenant, its limits and its usage."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from tenants.limits import current_usage
from tenants.models import Tenant
from tenants.selectors import USAGE_GROUPINGS
from tenants.services import LIMIT_FIELDS


class LimitsSerializer(serializers.ModelSerializer):
    class Meta:
        model = Tenant
        fields = list(LIMIT_FIELDS)


class CurrentUsageSerializer(serializers.Serializer):
    tokens_today = serializers.IntegerField()
    tokens_this_month = serializers.IntegerField()
    concurrent_turns = serializers.IntegerField(help_text="turns holding a slot now")
    parked_sessions = serializers.IntegerField(
        help_text="sessions whose next turn waits for the concurrency cap or the request rate"
    )
    open_streams = serializers.IntegerField(
        help_text="event streams and `wait` requests open now (max_concurrent_streams)"
    )
    sessions = serializers.IntegerField()


class TenantSerializer(serializers.ModelSerializer):
    limits = LimitsSerializer(source="*", read_only=True)
    usage = serializers.SerializerMethodField()
    queue = serializers.CharField(source="queue_name", read_only=True)

    class Meta:
        model = Tenant
        fields = ["slug", "name", "is_active", "queue", "limits", "usage", "created_at"]
        read_only_fields = fields

    @extend_schema_field(CurrentUsageSerializer)
    def get_usage(self, tenant: Tenant) -> dict:
        return current_usage(tenant)


# --- Usage ------------------------------------------------------------------------------

USAGE_PERIOD_HELP = (
    "an ISO date (2026-05-01) or date-time (2026-05-01T12:00:00Z; UTC when no offset)"
)


@extend_schema_field(OpenApiTypes.STR)
class DateOrDateTimeField(serializers.Field):
    """A date or a date-time, read as an aware datetime: a date means its first instant, or,
    with `end_of_day`, the first instant of the next day (so `end=2026-05-31` includes the
    31st)."""

    def __init__(self, *, end_of_day: bool = False, **kwargs):
        self.end_of_day = end_of_day
        super().__init__(**kwargs)

    def to_internal_value(self, data) -> datetime:
        text = str(data).strip()
        try:
            moment = self._parse(text)
        except (ValueError, OverflowError):  # well formed but impossible, like 2026-02-30
            moment = None
        if moment is None:
            raise serializers.ValidationError(f"Use {USAGE_PERIOD_HELP}, not {text[:50]!r}.")
        return moment if timezone.is_aware(moment) else moment.replace(tzinfo=UTC)

    def _parse(self, text: str) -> datetime | None:
        if (day := parse_date(text)) is not None:
            moment = datetime.combine(day, time.min)
            return moment + timedelta(days=1) if self.end_of_day else moment
        return parse_datetime(text)

    def to_representation(self, value: datetime) -> str:
        return value.isoformat()


class UsageQuerySerializer(serializers.Serializer):
    start = DateOrDateTimeField(
        required=False, help_text=f"{USAGE_PERIOD_HELP}; default: the 1st of this month"
    )
    end = DateOrDateTimeField(
        end_of_day=True,
        required=False,
        help_text=f"{USAGE_PERIOD_HELP}, excluded (a date includes its whole day); default: now",
    )
    group_by = serializers.ChoiceField(
        choices=list(USAGE_GROUPINGS),
        default="agent",
        error_messages={"invalid_choice": 'Use agent, model or day, not "{input}".'},
    )

    def validate(self, attrs: dict) -> dict:
        now = timezone.now()
        attrs.setdefault("end", now)
        attrs.setdefault("start", now.replace(day=1, hour=0, minute=0, second=0, microsecond=0))
        if attrs["start"] >= attrs["end"]:
            raise serializers.ValidationError({"end": "end must be later than start."})
        return attrs


class UsageTotalsSerializer(serializers.Serializer):
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()
    cost = serializers.DecimalField(max_digits=20, decimal_places=6, help_text="USD")
    calls = serializers.IntegerField(help_text="successful model calls")


class UsageGroupSerializer(UsageTotalsSerializer):
    key = serializers.CharField(
        allow_null=True,
        help_text="agent slug (null: a deleted agent), model name, or ISO day (UTC)",
    )


class UsageSerializer(serializers.Serializer):
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    group_by = serializers.ChoiceField(choices=list(USAGE_GROUPINGS))
    totals = UsageTotalsSerializer()
    groups = UsageGroupSerializer(many=True)
