from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from tenants.limits import current_usage
from tenants.models import Tenant


class LimitsSerializer(serializers.ModelSerializer):
    class Meta:
        model = Tenant
        fields = [
            "requests_per_minute",
            "tokens_per_day",
            "tokens_per_month",
            "max_concurrent_turns",
            "max_sessions",
        ]


class CurrentUsageSerializer(serializers.Serializer):
    tokens_today = serializers.IntegerField()
    tokens_this_month = serializers.IntegerField()
    concurrent_turns = serializers.IntegerField(help_text="turns holding a slot now")
    parked_sessions = serializers.IntegerField(help_text="sessions waiting for a slot")
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
