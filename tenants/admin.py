"""The operator's admin: tenants with their limits, keys and usage; the usage ledger."""

from __future__ import annotations

from datetime import datetime

from django.contrib import admin, messages
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from .models import ApiKey, Tenant, UsageRecord
from .selectors import usage_totals
from .services import LIMIT_FIELDS, issue_api_key, revoke_api_key
from .signals import tenant_created


class ApiKeyInline(admin.TabularInline):
    model = ApiKey
    extra = 0
    fields = ["name", "prefix", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = ["prefix", "created_at", "last_used_at"]
    can_delete = False


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = [
        "slug",
        "name",
        "is_active",
        "requests_per_minute",
        "tokens_per_day",
        "max_concurrent_turns",
        "max_sessions",
        "created_at",
    ]
    list_filter = ["is_active"]
    search_fields = ["slug", "name"]
    inlines = [ApiKeyInline]
    readonly_fields = ["usage_today", "usage_this_month"]
    fieldsets = [
        (None, {"fields": ["slug", "name", "is_active"]}),
        ("Usage (UTC)", {"fields": ["usage_today", "usage_this_month"]}),
        (
            "Limits",
            {"fields": list(LIMIT_FIELDS)},
        ),
    ]

    @admin.display(description="Today")
    def usage_today(self, tenant: Tenant) -> str:
        start = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
        return self._usage_since(tenant, start)

    @admin.display(description="This month")
    def usage_this_month(self, tenant: Tenant) -> str:
        start = timezone.now().replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        return self._usage_since(tenant, start)

    @staticmethod
    def _usage_since(tenant: Tenant, start: datetime) -> str:
        if tenant.pk is None:
            return "-"
        totals = usage_totals(tenant, start, timezone.now())
        records = reverse("admin:tenants_usagerecord_changelist")
        query = f"tenant__id__exact={tenant.pk}&created_at__gte={start.date().isoformat()}"
        return format_html(
            '{} tokens ({} in, {} out), ${} in <a href="{}?{}">{} calls</a>',
            f"{totals.total_tokens:,}",
            f"{totals.input_tokens:,}",
            f"{totals.output_tokens:,}",
            totals.cost,
            records,
            query,
            totals.calls,
        )

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if not change:  # announced once the admin's transaction commits, as the service does
            transaction.on_commit(lambda: tenant_created.send(sender=Tenant, tenant=obj))


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["prefix", "tenant", "name", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["tenant"]
    search_fields = ["prefix", "name", "tenant__slug"]
    fields = ["tenant", "name", "prefix", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = ["prefix", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke"]

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        issued = issue_api_key(tenant=obj.tenant, name=obj.name)
        obj.pk = issued.api_key.pk
        obj.prefix = issued.api_key.prefix
        # The only time the secret exists outside the caller's hands.
        self.message_user(
            request,
            f"API key created. Copy it now, it will not be shown again: {issued.secret}",
            messages.WARNING,
        )

    @admin.action(description="Revoke selected keys")
    def revoke(self, request, queryset):
        for api_key in queryset:
            revoke_api_key(api_key=api_key)
        self.message_user(request, f"Revoked {queryset.count()} key(s).")


@admin.register(UsageRecord)
class UsageRecordAdmin(admin.ModelAdmin):
    """The usage ledger, one row per model call; written by metering, so read-only here."""

    list_display = [
        "created_at",
        "tenant",
        "agent",
        "provider",
        "model",
        "input_tokens",
        "output_tokens",
        "cost",
        "turn_id",
    ]
    list_filter = ["tenant", "provider", "model", "created_at"]
    list_select_related = ["tenant", "agent"]
    search_fields = ["tenant__slug", "agent__slug", "model"]
    date_hierarchy = "created_at"
    show_full_result_count = False  # the ledger grows fast; counting it all is slow

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
