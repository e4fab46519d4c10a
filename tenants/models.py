"""Tenants, their limits and their API keys."""

from __future__ import annotations

from django.core.validators import MinValueValidator, RegexValidator
from django.db import models

from beamclaw.celery import tenant_queue

# A DNS label: it names the tenant's queue and shows up in URLs and metrics.
slug_validator = RegexValidator(
    r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$",
    "Use 1-63 lowercase letters, digits or hyphens, not starting or ending with a hyphen.",
    code="invalid_slug",
)


class Tenant(models.Model):
    slug = models.CharField(max_length=63, unique=True, validators=[slug_validator])
    name = models.CharField(max_length=200)
    is_active = models.BooleanField(
        default=True, help_text="A suspended tenant's keys answer 403 and its turns do not run."
    )

    # Limits, enforced by tenants/limits.py before every model call.
    requests_per_minute = models.PositiveIntegerField(
        default=600, validators=[MinValueValidator(1)], help_text="Model calls per minute."
    )
    tokens_per_day = models.PositiveBigIntegerField(default=2_000_000)
    tokens_per_month = models.PositiveBigIntegerField(default=50_000_000)
    max_concurrent_turns = models.PositiveIntegerField(
        default=20, validators=[MinValueValidator(1)]
    )
    max_sessions = models.PositiveIntegerField(default=10_000, validators=[MinValueValidator(1)])
    # Checked when a cron job is created or rescheduled (agents/cron/schedules.py).
    max_cron_jobs = models.PositiveIntegerField(
        default=100, help_text="Cron jobs the tenant may have, paused ones included."
    )
    min_cron_interval_seconds = models.PositiveIntegerField(
        default=60,
        validators=[MinValueValidator(1)],
        help_text="The least time between two runs of one cron job: the smallest "
        "'every_seconds', and a cron expression may not fire twice within it (a cron "
        "expression fires at most once a minute in any case).",
    )
    max_concurrent_streams = models.PositiveIntegerField(
        default=100,
        validators=[MinValueValidator(1)],
        help_text="Event streams and requests waiting for an answer (wait) open at once, "
        "across every web process.",
    )
    # Dedicated tenants are consumed only by workers started with `--tenants <slug>`,
    # never by the hash shards (large tenants get their own capacity).
    dedicated_workers = models.BooleanField(default=False)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug

    @property
    def queue_name(self) -> str:
        return tenant_queue(self.slug)


class ApiKey(models.Model):
    """A tenant's API key. Only a public prefix and a SHA-256 of the secret are stored."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    secret_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.tenant.slug}/{self.prefix}"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None


class UsageRecord(models.Model):
    """One model call's tokens and cost; written by the turn loop with the step that made the
    call, summed for budgets and bills."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="usage_records")
    agent = models.ForeignKey(
        "agents.Agent", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    turn = models.ForeignKey(
        "agents.Turn", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    provider = models.CharField(max_length=32)
    model = models.CharField(max_length=200)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=14, decimal_places=6, default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["tenant", "created_at"], name="usage_tenant_time")]

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.model} {self.input_tokens}+{self.output_tokens}"

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens
