"""Agents, the sessions people hold with them, and every turn and message in them."""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from tenants.models import Tenant, slug_validator


class QueueMode(models.TextChoices):
    """What a message does when it arrives while the session's turn runs."""

    ENQUEUE = "enqueue", "Run next, in order"
    COLLECT = "collect", "Join all waiting messages into one next turn"
    INTERRUPT = "interrupt", "Stop the running turn at its next step, run this one"
    REJECT = "reject", "Refuse with 409 while a turn is running or queued"


class ProviderName(models.TextChoices):
    OFFLINE = "offline", "Offline (deterministic, no network)"
    OPENAI = "openai", "OpenAI-compatible Chat Completions"
    ANTHROPIC = "anthropic", "Anthropic Messages"


class Agent(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="agents")
    slug = models.CharField(max_length=63, validators=[slug_validator])
    name = models.CharField(max_length=200, blank=True)
    system_prompt = models.TextField(blank=True)
    provider = models.CharField(
        max_length=32, choices=ProviderName.choices, default=ProviderName.OFFLINE
    )
    model = models.CharField(max_length=200, default="offline-1")
    tools = models.JSONField(default=list, blank=True, help_text="Names of allowed tools.")
    queue_mode = models.CharField(
        max_length=16, choices=QueueMode.choices, default=QueueMode.ENQUEUE
    )
    max_iterations = models.PositiveIntegerField(
        default=8, validators=[MinValueValidator(1), MaxValueValidator(50)]
    )
    turn_timeout_seconds = models.PositiveIntegerField(
        default=300, validators=[MinValueValidator(1), MaxValueValidator(3600)]
    )
    context_token_budget = models.PositiveIntegerField(
        default=16_000, validators=[MinValueValidator(256)]
    )
    max_output_tokens = models.PositiveIntegerField(null=True, blank=True)
    temperature = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0), MaxValueValidator(2)]
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Soft delete: an agent with sessions keeps its row so their history stays readable.
    deleted_at = models.DateTimeField(null=True, blank=True)
    # Installed from a marketplace package: each turn runs the version it pinned at start.
    package_backed = models.BooleanField(default=False, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "slug"],
                condition=Q(deleted_at__isnull=True),
                name="agent_slug_unique_per_tenant",
            )
        ]

    def __str__(self) -> str:
        return f"{self.tenant.slug}/{self.slug}"


class ProviderCredential(models.Model):
    """A tenant's own key (and endpoint) for a provider; the key is Fernet-encrypted."""

    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, related_name="provider_credentials"
    )
    provider = models.CharField(max_length=32, choices=ProviderName.choices)
    api_key_encrypted = models.TextField(blank=True)
    base_url = models.URLField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "provider"], name="provider_credential_unique_per_tenant"
            )
        ]

    def __str__(self) -> str:
        return f"{self.tenant.slug}/{self.provider}"


class Session(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="sessions")
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="sessions")
    key = models.CharField(max_length=300)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children"
    )
    # The fencing token of the worker that owns the session now: every durable write of
    # a turn is `... WHERE fence = <its token>`, so a worker that lost its lease can't write.
    fence = models.BigIntegerField(default=0)
    # Last sequence number handed to a message; allocated under the fenced row lock.
    last_seq = models.PositiveIntegerField(default=0)
    memory = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_activity_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "key"], name="session_key_unique_per_tenant")
        ]

    def __str__(self) -> str:
        return self.key


class TurnStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE_STATUSES = (TurnStatus.QUEUED, TurnStatus.RUNNING, TurnStatus.WAITING)
FINAL_STATUSES = (TurnStatus.SUCCEEDED, TurnStatus.FAILED, TurnStatus.CANCELLED)


class WaitingReason(models.TextChoices):
    """Why a queued turn is held back by its tenant's limits (it is parked)."""

    RATE_LIMITED = "rate_limited", "Over the tenant's request rate"
    CONCURRENCY_LIMIT = "concurrency_limit", "The tenant's concurrent turns are all taken"


class Turn(models.Model):
    """One user input and everything the agent did for it."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="turns")
    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="turns")
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="turns")
    status = models.CharField(max_length=16, choices=TurnStatus.choices, default=TurnStatus.QUEUED)
    mode = models.CharField(max_length=16, choices=QueueMode.choices)
    source = models.CharField(max_length=32, default="api")
    attempts = models.PositiveIntegerField(default=0)
    fence = models.BigIntegerField(default=0)
    cancel_requested = models.BooleanField(default=False)
    iterations = models.PositiveIntegerField(default=0)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    # A sub-agent's turn: the parent turn that spawned it and the tool call it answers.
    parent_turn = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children"
    )
    parent_tool_call_id = models.CharField(max_length=200, blank=True)
    # Set when a Celery trigger could not be sent (broker down) or was re-sent by the
    # reaper; the reaper re-sends pending ones as soon as the broker answers again.
    dispatch_pending = models.BooleanField(default=False)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    # A queued turn parked by a tenant limit: why, and when it resumes (unknown for the
    # concurrency limit: when a running turn of the tenant ends). Cleared when it starts.
    waiting_reason = models.CharField(max_length=32, choices=WaitingReason.choices, blank=True)
    resumes_at = models.DateTimeField(null=True, blank=True)
    # The marketplace package version this turn runs on, fixed when it starts.
    package_version_id = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["session", "status", "id"], name="turn_session_status"),
            models.Index(fields=["tenant", "status"], name="turn_tenant_status"),
            models.Index(fields=["status", "created_at"], name="turn_status_created"),
        ]

    def __str__(self) -> str:
        return f"turn {self.pk} ({self.status})"

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES


class MessageRole(models.TextChoices):
    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"


class Message(models.Model):
    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="messages")
    turn = models.ForeignKey(
        Turn, null=True, blank=True, on_delete=models.SET_NULL, related_name="messages"
    )
    # Gap-free per session, given when the message enters the conversation: a user
    # message when its turn starts (so history reads user, answer, user, answer even
    # when messages arrive while a turn runs), everything else when it is written.
    seq = models.PositiveIntegerField(null=True, blank=True)
    role = models.CharField(max_length=16, choices=MessageRole.choices)
    content = models.TextField(blank=True)
    tool_calls = models.JSONField(default=list, blank=True)
    tool_call_id = models.CharField(max_length=200, blank=True)
    name = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["session", "seq"], name="message_seq_unique")
        ]
        indexes = [models.Index(fields=["session", "seq"], name="message_session_seq")]

    def __str__(self) -> str:
        return f"{self.role} #{self.seq}"


# --- Cron -----------------------------------------------------------------------------


class CronScheduleKind(models.TextChoices):
    CRON = "cron", "A cron expression in a time zone"
    EVERY = "every", "Every N seconds"
    ONCE = "once", "Once, at a time"


class CronJob(models.Model):
    """A message sent to an agent on a schedule, mirrored into django-celery-beat.

    Exactly one schedule is set: `cron` (read in the IANA zone `timezone`),
    `every_seconds`, or `at` (once). Each run goes to `session_key`, or to a fresh
    session `agent:<slug>:cron:<job-id>:<run-n>` when that is blank. `agents.cron.beat`
    keeps the job's beat `PeriodicTask` (task `agents.fire_cron_job`) in step on every change.

    `delivery` says where each run's answer is posted, or is null:
    `{"binding": <ChannelBinding id of the same tenant>, "channel": <Slack or Discord
    channel id>, "thread_ts": <Slack thread, or null>}` (checked by
    `agents.cron.services.check_delivery`). A run with a delivery gets a ChannelDelivery for
    its turn, so the channel code posts the answer (or a short failure note) when it ends.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="cron_jobs")
    # Kept when the agent is deleted for good: the job then records skipped runs, so its
    # owner sees why nothing happens instead of a job that silently vanished.
    agent = models.ForeignKey(
        Agent, null=True, blank=True, on_delete=models.SET_NULL, related_name="cron_jobs"
    )
    name = models.CharField(max_length=200, blank=True)
    message = models.TextField()
    session_key = models.CharField(
        max_length=300, blank=True, help_text="Blank: a fresh session for every run."
    )
    cron = models.CharField(max_length=200, blank=True)
    timezone = models.CharField(max_length=64, blank=True, help_text="IANA name; cron only.")
    every_seconds = models.PositiveIntegerField(null=True, blank=True)
    at = models.DateTimeField(null=True, blank=True)
    enabled = models.BooleanField(default=True)
    delivery = models.JSONField(null=True, blank=True)
    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask",
        null=True,
        blank=True,
        editable=False,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    run_count = models.PositiveIntegerField(default=0, editable=False)
    # Interval runs count from here, as beat does: the last scheduled run, or when the
    # schedule was set or the job resumed.
    anchor_at = models.DateTimeField(editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(
                    (~Q(cron="") & Q(every_seconds__isnull=True) & Q(at__isnull=True))
                    | (Q(cron="") & Q(every_seconds__isnull=False) & Q(at__isnull=True))
                    | (Q(cron="") & Q(every_seconds__isnull=True) & Q(at__isnull=False))
                ),
                name="cron_job_has_one_schedule",
            )
        ]

    def __str__(self) -> str:
        return f"{self.tenant.slug}/cron {self.pk} {self.name}".rstrip()

    @property
    def schedule_kind(self) -> str:
        if self.cron:
            return CronScheduleKind.CRON
        if self.every_seconds is not None:
            return CronScheduleKind.EVERY
        return CronScheduleKind.ONCE


class CronTrigger(models.TextChoices):
    SCHEDULE = "schedule", "Fired by the schedule"
    MANUAL = "manual", "Run now"


class CronOutcome(models.TextChoices):
    SUBMITTED = "submitted", "The message was sent; see the turn"
    SKIPPED = "skipped", "Not sent; the detail says why"
    FAILED = "failed", "Sending was refused; the detail has the error"


class CronRun(models.Model):
    """One firing of a cron job: when, the turn it started, and how it went."""

    job = models.ForeignKey(CronJob, on_delete=models.CASCADE, related_name="runs")
    number = models.PositiveIntegerField()
    trigger = models.CharField(max_length=16, choices=CronTrigger.choices)
    outcome = models.CharField(max_length=16, choices=CronOutcome.choices)
    detail = models.TextField(blank=True)
    session_key = models.CharField(max_length=300, blank=True)
    turn = models.ForeignKey(
        Turn, null=True, blank=True, on_delete=models.SET_NULL, related_name="cron_runs"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["job", "number"], name="cron_run_number_unique")
        ]

    def __str__(self) -> str:
        return f"cron {self.job_id} run {self.number} ({self.outcome})"


# --- Channels -------------------------------------------------------------------------


class ChannelKind(models.TextChoices):
    SLACK = "slack", "Slack app"
    DISCORD = "discord", "Discord application"


class ChannelSessionScope(models.TextChoices):
    """How a channel message picks its session (its key under `agent:<slug>:<kind>:...`)."""

    CHANNEL_OR_THREAD = "channel_or_thread", "One per channel; one per thread in a thread"
    THREAD = "thread", "One per thread; a top-level message starts a new one"
    CHANNEL = "channel", "One per channel, threads included"


class ChannelBinding(models.Model):
    """A Slack app or Discord application wired to one agent of the tenant.

    Its id is in the webhook URL (`/hooks/slack/<id>/events`, `/hooks/discord/<id>/
    interactions`). Secrets are Fernet-encrypted (beamclaw.crypto) and never shown: the
    Slack signing secret and both bot tokens. The Discord public key only verifies, so
    it is stored as it is.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="channel_bindings")
    kind = models.CharField(max_length=16, choices=ChannelKind.choices)
    name = models.CharField(max_length=200, blank=True)
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="channel_bindings")
    external_id = models.CharField(
        max_length=100,
        blank=True,
        help_text="Slack: the workspace (team) id, T...; events from another team are "
        "ignored. Discord: the application id.",
    )
    session_scope = models.CharField(
        max_length=32,
        choices=ChannelSessionScope.choices,
        default=ChannelSessionScope.CHANNEL_OR_THREAD,
    )
    signing_secret_encrypted = models.TextField(blank=True, editable=False)
    bot_token_encrypted = models.TextField(blank=True, editable=False)
    public_key = models.CharField(
        max_length=64, blank=True, help_text="Discord: the application's public key (hex)."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=ChannelKind.values), name="channel_binding_kind_known"
            )
        ]

    def __str__(self) -> str:
        label = self.name or self.external_id or self.pk
        return f"{self.tenant.slug}/{self.kind} {label}"


# The sources of turns whose answer may be posted to a channel (a ChannelDelivery):
# Slack and Discord webhooks, and cron runs with a delivery.
DELIVERED_SOURCES = ("slack", "discord", "cron")


class ChannelDelivery(models.Model):
    """Where a channel turn's answer goes, and whether it got there (at most once).

    `target` is the reply address: Slack `{"channel", "thread_ts"}`; Discord
    `{"application_id", "token_encrypted", "channel_id"}` (the interaction token is
    Fernet-encrypted: it lets anyone edit the reply for 15 minutes), or just
    `{"channel_id"}` when there is no interaction to answer (a cron job's run: the bot
    posts in the channel). `parts_sent` counts the pieces of a long answer already
    posted, so a retry continues instead of repeating. `failed_at` is set when delivery
    was given up (refused, or out of attempts); `last_error` says why.
    """

    turn = models.OneToOneField(Turn, on_delete=models.CASCADE, related_name="channel_delivery")
    binding = models.ForeignKey(ChannelBinding, on_delete=models.CASCADE, related_name="deliveries")
    target = models.JSONField(default=dict)
    parts_sent = models.PositiveIntegerField(default=0)
    # A delivery task holds the row until this time; another one (a duplicate trigger)
    # leaves it alone meanwhile.
    claimed_until = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    # When a posting attempt is due: set in the turn's final fenced transaction, pushed
    # back by a retry's wait. A pending delivery still unposted well after this lost its
    # trigger (a worker died, the broker was down); the reaper sends it again.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "channel deliveries"
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(delivered_at__isnull=True, failed_at__isnull=True),
                name="delivery_pending_due",
            )
        ]

    def __str__(self) -> str:
        return f"delivery of turn {self.turn_id} ({self.status})"

    @property
    def status(self) -> str:
        """delivered, failed (given up) or pending (the turn runs, or a retry is due)."""
        if self.delivered_at:
            return "delivered"
        return "failed" if self.failed_at else "pending"
