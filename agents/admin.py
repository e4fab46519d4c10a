import copy

from django import forms
from django.contrib import admin, messages

from beamclaw.errors import DomainError

from .channels import bindings
from .cron import schedules as cron_schedules
from .cron import services as cron_services
from .models import (
    Agent,
    ChannelBinding,
    ChannelDelivery,
    CronJob,
    CronOutcome,
    CronRun,
    CronTrigger,
    Message,
    ProviderCredential,
    Session,
    Turn,
)


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
        "waiting_reason",
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


class CronRunInline(admin.TabularInline):
    model = CronRun
    extra = 0
    fields = [
        "number",
        "trigger",
        "outcome",
        "detail",
        "session_key",
        "turn",
        "delivery",
        "created_at",
    ]
    readonly_fields = fields
    can_delete = False
    ordering = ["-number"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("turn__channel_delivery")

    @admin.display(description="posted")
    def delivery(self, run: CronRun) -> str:
        found = getattr(run.turn, "channel_delivery", None) if run.turn else None
        if found is None:
            return "-"
        return f"{found.status}: {found.last_error}" if found.last_error else found.status


class CronJobAdminForm(forms.ModelForm):
    """Checks a job as the API does (agents.cron.services), with the schedule rules in one place."""

    SCHEDULE_FIELDS = ("cron", "timezone", "every_seconds", "at")

    class Meta:
        model = CronJob
        fields = [
            "tenant",
            "agent",
            "name",
            "message",
            "session_key",
            "cron",
            "timezone",
            "every_seconds",
            "at",
            "enabled",
            "delivery",
        ]

    @property
    def rescheduled(self) -> bool:
        changed = set(self.changed_data)
        resumed = "enabled" in changed and self.cleaned_data.get("enabled")
        return not self.instance.pk or bool(changed & set(self.SCHEDULE_FIELDS)) or resumed

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        job = copy.copy(self.instance)
        for name, value in data.items():
            setattr(job, name, value)
        try:
            schedule = cron_schedules.check_schedule(
                **{name: data.get(name) for name in self.SCHEDULE_FIELDS}
            )
            schedule.apply_to(job)
            cron_services.validate_cron_job(job, rescheduled=self.rescheduled)
            if "delivery" in self.changed_data:  # a binding deleted since stays until edited
                data["delivery"] = cron_services.check_delivery(
                    tenant=job.tenant, delivery=job.delivery
                )
        except DomainError as error:
            raise forms.ValidationError(error.message, code=error.code)
        data.update({name: getattr(job, name) for name in self.SCHEDULE_FIELDS})
        return data


@admin.register(CronJob)
class CronJobAdmin(admin.ModelAdmin):
    form = CronJobAdminForm
    list_display = [
        "id",
        "tenant",
        "agent",
        "name",
        "schedule",
        "enabled",
        "run_count",
        "updated_at",
    ]
    list_filter = ["enabled", "tenant"]
    search_fields = ["name", "message", "tenant__slug", "agent__slug"]
    readonly_fields = ["periodic_task", "run_count", "anchor_at", "created_at", "updated_at"]
    list_select_related = ["tenant", "agent"]
    inlines = [CronRunInline]
    actions = ["run_now", "pause", "resume"]

    @admin.display(description="schedule")
    def schedule(self, job: CronJob) -> str:
        if job.cron:
            return f"{job.cron} ({job.timezone})"
        if job.every_seconds is not None:
            return f"every {job.every_seconds} s"
        return f"once at {job.at:%Y-%m-%d %H:%M:%S %Z}"

    def get_readonly_fields(self, request, obj=None):
        # A job stays with its tenant: its runs, sessions and queue are the tenant's.
        return [*self.readonly_fields, "tenant"] if obj else self.readonly_fields

    def save_model(self, request, obj, form, change):
        cron_services.save_cron_job(job=obj, rescheduled=form.rescheduled)

    @admin.action(description="Run now")
    def run_now(self, request, queryset):
        for job in queryset:
            run = cron_services.run_cron_job(job=job, trigger=CronTrigger.MANUAL)
            level = messages.SUCCESS if run.outcome == CronOutcome.SUBMITTED else messages.WARNING
            turn = f", turn {run.turn_id}" if run.turn_id else ""
            detail = f": {run.detail}" if run.detail else ""
            self.message_user(request, f"Job {job.pk}: {run.outcome}{turn}{detail}", level)

    @admin.action(description="Pause")
    def pause(self, request, queryset):
        for job in queryset.filter(enabled=True):
            cron_services.update_cron_job(job=job, enabled=False)

    @admin.action(description="Resume")
    def resume(self, request, queryset):
        for job in queryset.filter(enabled=False):
            try:
                cron_services.update_cron_job(job=job, enabled=True)
            except DomainError as error:
                self.message_user(request, f"Job {job.pk}: {error.message}", messages.ERROR)


class ChannelBindingAdminForm(forms.ModelForm):
    """Secrets are write-only: typed in, encrypted, never shown; blank keeps the stored one."""

    signing_secret = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Slack: the app's Signing Secret (Basic Information). "
        "Leave blank to keep the current one.",
    )
    bot_token = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Slack: the Bot User OAuth Token (xoxb-...); Discord: the bot token. "
        "Leave blank to keep the current one.",
    )

    class Meta:
        model = ChannelBinding
        fields = ["tenant", "kind", "name", "agent", "external_id", "session_scope", "public_key"]

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        binding = copy.copy(self.instance)
        for name in self.Meta.fields:
            setattr(binding, name, data.get(name))
        has_secret = bool(data.get("signing_secret") or binding.signing_secret_encrypted)
        try:
            bindings.validate_binding(binding, has_signing_secret=has_secret)
        except DomainError as error:
            raise forms.ValidationError(error.message, code=error.code)
        return data


@admin.register(ChannelBinding)
class ChannelBindingAdmin(admin.ModelAdmin):
    form = ChannelBindingAdminForm
    list_display = [
        "id",
        "tenant",
        "kind",
        "name",
        "agent",
        "external_id",
        "webhook_path",
        "secrets",
        "updated_at",
    ]
    list_filter = ["kind", "tenant"]
    search_fields = ["name", "external_id", "tenant__slug", "agent__slug"]
    readonly_fields = ["webhook_path", "secrets", "created_at", "updated_at"]
    list_select_related = ["tenant", "agent"]

    @admin.display(description="webhook path")
    def webhook_path(self, binding: ChannelBinding) -> str:
        if not binding.pk:
            return "(after saving)"
        if binding.kind == "slack":
            return f"/hooks/slack/{binding.pk}/events"
        return f"/hooks/discord/{binding.pk}/interactions"

    @admin.display(description="secrets stored")
    def secrets(self, binding: ChannelBinding) -> str:
        stored = [
            label
            for label, value in [
                ("signing secret", binding.signing_secret_encrypted),
                ("bot token", binding.bot_token_encrypted),
            ]
            if value
        ]
        return ", ".join(stored) or "none"

    def save_model(self, request, obj, form, change):
        bindings.save_binding(
            binding=obj,
            signing_secret=form.cleaned_data.get("signing_secret") or "",
            bot_token=form.cleaned_data.get("bot_token") or "",
        )


@admin.register(ChannelDelivery)
class ChannelDeliveryAdmin(admin.ModelAdmin):
    list_display = [
        "turn",
        "binding",
        "delivered_at",
        "failed_at",
        "attempts",
        "parts_sent",
        "last_error",
        "created_at",
    ]
    list_filter = ["binding__kind", "binding__tenant"]
    search_fields = ["turn__session__key", "binding__tenant__slug"]
    fields = [
        "turn",
        "binding",
        "reply_to",
        "delivered_at",
        "failed_at",
        "attempts",
        "parts_sent",
        "next_attempt_at",
        "claimed_until",
        "last_error",
        "created_at",
    ]
    readonly_fields = fields
    list_select_related = ["turn", "binding__tenant"]

    @admin.display(description="reply to")
    def reply_to(self, delivery: ChannelDelivery) -> dict:
        # The Discord interaction token stays out of sight, even encrypted.
        return {k: v for k, v in delivery.target.items() if k != "token_encrypted"}

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
