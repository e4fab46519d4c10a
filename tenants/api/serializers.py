from rest_framework import serializers

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


class TenantSerializer(serializers.ModelSerializer):
    limits = LimitsSerializer(source="*", read_only=True)
    queue = serializers.CharField(source="queue_name", read_only=True)

    class Meta:
        model = Tenant
        fields = ["slug", "name", "is_active", "queue", "limits", "created_at"]
        read_only_fields = fields
