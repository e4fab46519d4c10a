from django.contrib import admin, messages

from .models import ApiKey, Tenant
from .services import issue_api_key, revoke_api_key


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
    fieldsets = [
        (None, {"fields": ["slug", "name", "is_active"]}),
        (
            "Limits",
            {
                "fields": [
                    "requests_per_minute",
                    "tokens_per_day",
                    "tokens_per_month",
                    "max_concurrent_turns",
                    "max_sessions",
                ]
            },
        ),
    ]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if not change:
            from .queues import announce_tenant_queue

            announce_tenant_queue(obj.slug, dedicated=obj.dedicated_workers)


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
