"""The shard map (read-only) and the admin's page of running workers."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest
from django.template.response import TemplateResponse

from .models import ShardMap
from .registry import list_workers


@admin.register(ShardMap)
class ShardMapAdmin(admin.ModelAdmin):
    """Read-only: a map changes with `manage.py reshard`, which moves queues without a gap."""

    list_display = ["epoch", "shard_count", "status", "pins", "note", "created_at", "activated_at"]
    list_filter = ["status"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


def workers_admin_view(request: HttpRequest) -> TemplateResponse:
    """The admin's page of running workers (linked from the admin index)."""
    context = {
        **admin.site.each_context(request),
        "title": "Workers",
        "workers": list_workers(with_standby=True),
        "heartbeat": settings.WORKER_HEARTBEAT_SECONDS,
    }
    return TemplateResponse(request, "admin/fleet/workers.html", context)
