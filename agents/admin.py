from django.contrib import admin

from .models import Agent, Message, ProviderCredential, Session, Turn


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    list_display = ["slug", "tenant", "provider", "model", "queue_mode", "deleted_at", "updated_at"]
    list_filter = ["provider", "queue_mode", "tenant"]
    search_fields = ["slug", "name", "tenant__slug"]


@admin.register(ProviderCredential)
class ProviderCredentialAdmin(admin.ModelAdmin):
    list_display = ["tenant", "provider", "base_url", "updated_at"]
    list_filter = ["provider"]
    # The encrypted key is never shown; set it through the API.
    exclude = ["api_key_encrypted"]


class MessageInline(admin.TabularInline):
    model = Message
    extra = 0
    fields = ["seq", "role", "content", "tool_calls", "turn", "created_at"]
    readonly_fields = fields
    can_delete = False
    ordering = ["seq"]


@admin.register(Session)
class SessionAdmin(admin.ModelAdmin):
    list_display = ["key", "tenant", "agent", "last_seq", "last_activity_at"]
    list_filter = ["tenant"]
    search_fields = ["key", "tenant__slug"]
    readonly_fields = ["fence", "last_seq", "created_at", "last_activity_at"]
    inlines = [MessageInline]


@admin.register(Turn)
class TurnAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "tenant",
        "session",
        "status",
        "error_code",
        "attempts",
        "iterations",
        "input_tokens",
        "output_tokens",
        "created_at",
        "finished_at",
    ]
    list_filter = ["status", "tenant", "error_code"]
    search_fields = ["session__key", "tenant__slug"]
    readonly_fields = [f.name for f in Turn._meta.fields]
    list_select_related = ["tenant", "session"]
