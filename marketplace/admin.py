"""The marketplace in the admin: publishers, packages and their versions (revoking is a
staff action here), installations, and the metered usage."""

from django.contrib import admin, messages

from beamclaw.errors import DomainError

from . import publishing
from .models import (
    Installation,
    LedgerEntry,
    Package,
    PackageVersion,
    Publisher,
    UsageEvent,
    VersionStatus,
)


@admin.register(Publisher)
class PublisherAdmin(admin.ModelAdmin):
    list_display = ["handle", "tenant", "revenue_share_bp", "created_at"]
    search_fields = ["handle", "tenant__slug"]


class VersionInline(admin.TabularInline):
    model = PackageVersion
    extra = 0
    fields = ["version", "status", "status_reason", "published_at", "manifest_sha256"]
    readonly_fields = fields
    can_delete = False
    show_change_link = True


@admin.register(Package)
class PackageAdmin(admin.ModelAdmin):
    list_display = ["__str__", "visibility", "summary", "updated_at"]
    list_filter = ["visibility"]
    search_fields = ["slug", "summary", "publisher__handle"]
    inlines = [VersionInline]


@admin.action(description="Revoke the selected versions (final; give the reason first)")
def revoke(modeladmin, request, queryset):
    for version in queryset:
        try:
            publishing.set_status(
                version=version,
                status=VersionStatus.REVOKED,
                reason=version.status_reason or "Revoked by the platform.",
                staff=True,
            )
        except DomainError as error:
            modeladmin.message_user(request, f"{version}: {error.message}", messages.ERROR)


@admin.register(PackageVersion)
class PackageVersionAdmin(admin.ModelAdmin):
    list_display = ["__str__", "status", "published_at"]
    list_filter = ["status"]
    search_fields = ["package__slug", "package__publisher__handle", "version"]
    # A published version never changes; only its status does, through the actions.
    readonly_fields = [
        "package",
        "version",
        "identity",
        "manifest",
        "manifest_sha256",
        "artifact_sha256",
        "status",
        "status_changed_at",
        "min_platform_version",
        "published_at",
    ]
    fields = [*readonly_fields, "status_reason"]
    actions = [revoke]


@admin.register(Installation)
class InstallationAdmin(admin.ModelAdmin):
    list_display = ["__str__", "spec", "version", "state", "updated_at"]
    list_filter = ["state"]
    search_fields = ["tenant__slug", "agent__slug", "package__slug"]
    raw_id_fields = ["agent", "version", "previous_version", "pending_version"]


@admin.register(UsageEvent)
class UsageEventAdmin(admin.ModelAdmin):
    list_display = ["idempotency_key", "tenant", "kind", "amount_micros", "created_at"]
    list_filter = ["kind", "succeeded"]
    search_fields = ["idempotency_key", "tenant__slug"]

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # append-only


@admin.register(LedgerEntry)
class LedgerEntryAdmin(admin.ModelAdmin):
    list_display = ["event", "account", "tenant", "publisher", "amount_micros", "created_at"]
    list_filter = ["account"]

    def has_change_permission(self, request, obj=None) -> bool:
        return False
