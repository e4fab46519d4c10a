"""Versioned agent packages: who publishes them, their immutable versions, and the
installations that back a tenant's agent with one.

A version is never changed once published and never reused, even after a yank: its
manifest and artifact are stored with their sha256, so a cache keyed by digest never
needs invalidating and a turn that resolved a version finishes on exactly that code.
"""

from __future__ import annotations

from django.core.validators import MaxValueValidator
from django.db import models

from agents.models import Agent, Turn
from tenants.models import Tenant, slug_validator


class Publisher(models.Model):
    """A tenant's handle in the marketplace: packages are named `<handle>/<slug>`."""

    tenant = models.OneToOneField(Tenant, on_delete=models.CASCADE, related_name="publisher")
    handle = models.CharField(max_length=63, unique=True, validators=[slug_validator])
    display_name = models.CharField(max_length=200, blank=True)
    # The publisher's part of every metered charge, in basis points (8000 = 80 %); the
    # platform keeps the rest. Copied into each usage event, so a change rewrites nothing.
    revenue_share_bp = models.PositiveIntegerField(
        default=8000, validators=[MaxValueValidator(10_000)]
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.handle


class Visibility(models.TextChoices):
    PUBLIC = "public", "Listed in the catalogue"
    UNLISTED = "unlisted", "Installable by name, not listed"


class Package(models.Model):
    publisher = models.ForeignKey(Publisher, on_delete=models.CASCADE, related_name="packages")
    slug = models.CharField(max_length=63, validators=[slug_validator])
    summary = models.CharField(max_length=200, blank=True)
    visibility = models.CharField(
        max_length=16, choices=Visibility.choices, default=Visibility.PUBLIC
    )
    # Set by the publisher: installs still work, and everyone sees why not to.
    deprecation_message = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["publisher", "slug"], name="package_slug_unique")
        ]

    def __str__(self) -> str:
        return f"{self.publisher.handle}/{self.slug}"


class VersionStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    # Hidden from ranges and `latest`; an exact pin still gets it.
    YANKED = "yanked", "Yanked by its publisher"
    # Never resolved again (staff only: malware, a licence problem).
    REVOKED = "revoked", "Revoked by the platform"


class PackageVersion(models.Model):
    package = models.ForeignKey(Package, on_delete=models.CASCADE, related_name="versions")
    version = models.CharField(max_length=64)  # canonical SemVer text
    # SemVer without build metadata: `1.0.0+a` and `1.0.0+b` are the same version.
    identity = models.CharField(max_length=64)
    manifest = models.JSONField()
    manifest_sha256 = models.CharField(max_length=64)
    # The tool code (a .tar.gz), capped at upload; empty for a package without Python tools.
    artifact = models.BinaryField(null=True, blank=True, editable=False)
    artifact_sha256 = models.CharField(max_length=64, blank=True)
    status = models.CharField(
        max_length=16, choices=VersionStatus.choices, default=VersionStatus.ACTIVE
    )
    status_reason = models.TextField(blank=True)
    status_changed_at = models.DateTimeField(null=True, blank=True)
    min_platform_version = models.CharField(max_length=64, blank=True)
    published_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["package", "identity"], name="package_version_unique")
        ]

    def __str__(self) -> str:
        return f"{self.package}@{self.version}"


class InstallationState(models.TextChoices):
    ACTIVE = "active", "Following its spec"
    # A newer version in range widens permissions or price: it waits for consent.
    PENDING_CONSENT = "pending_consent", "A newer version waits for consent"


class Installation(models.Model):
    """A tenant's agent backed by a package: the agent's turns run the resolved version."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="installations")
    agent = models.OneToOneField(Agent, on_delete=models.CASCADE, related_name="installation")
    package = models.ForeignKey(Package, on_delete=models.PROTECT, related_name="installations")
    spec = models.CharField(max_length=200)
    version = models.ForeignKey(PackageVersion, on_delete=models.PROTECT, related_name="+")
    # The version before the last upgrade: `rollback` returns to it.
    previous_version = models.ForeignKey(
        PackageVersion, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    # A version in range that the tenant has not consented to yet.
    pending_version = models.ForeignKey(
        PackageVersion, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    state = models.CharField(
        max_length=24, choices=InstallationState.choices, default=InstallationState.ACTIVE
    )
    # The permissions the tenant consented to (the resolved version's, echoed at install).
    granted_permissions = models.JSONField(default=dict)
    # The installer's choice of provider and model, kept across version moves.
    provider_override = models.CharField(max_length=32, blank=True)
    model_override = models.CharField(max_length=200, blank=True)
    # Checked before every metered call: the installation stops spending past it.
    spend_cap_micros = models.PositiveBigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.tenant.slug}/{self.agent.slug} ← {self.package}"


class TurnPin(models.Model):
    """The version a package-backed turn runs on, recorded when it first starts: retries
    and resumes read it back, so a turn finishes on the version it began with."""

    turn = models.OneToOneField(
        Turn, on_delete=models.CASCADE, primary_key=True, related_name="package_pin"
    )
    version = models.ForeignKey(PackageVersion, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"turn {self.turn_id} on {self.version_id}"


class UsageKind(models.TextChoices):
    TURN = "turn", "Turn"
    PROVIDER_CALL = "provider_call", "Model call"
    TOOL_CALL = "tool_call", "Tool call"


class UsageEvent(models.Model):
    """One metered use of a package version: append-only, written in the transaction that
    saves the step it meters, and unique by a key the step determines, so a retried or
    re-delivered step can never count twice. Price and share are copied in, so a later
    price change rewrites no history. Money is in integer micro-units."""

    idempotency_key = models.CharField(max_length=200, unique=True)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="package_usage")
    installation = models.ForeignKey(
        Installation, on_delete=models.SET_NULL, null=True, related_name="usage_events"
    )
    package_version = models.ForeignKey(
        PackageVersion, on_delete=models.PROTECT, related_name="usage_events"
    )
    publisher = models.ForeignKey(Publisher, on_delete=models.PROTECT, related_name="usage_events")
    turn_id = models.BigIntegerField(null=True)
    kind = models.CharField(max_length=16, choices=UsageKind.choices)
    succeeded = models.BooleanField(default=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    pricing = models.JSONField(default=dict)
    revenue_share_bp = models.PositiveIntegerField()
    amount_micros = models.PositiveBigIntegerField(default=0)
    publisher_micros = models.PositiveBigIntegerField(default=0)
    platform_micros = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    def __str__(self) -> str:
        return self.idempotency_key


class LedgerAccount(models.TextChoices):
    CONSUMER = "consumer", "What the installing tenant owes"
    PUBLISHER = "publisher", "What the publisher is owed"
    PLATFORM = "platform", "What the platform keeps"


class LedgerEntry(models.Model):
    """Double entry: a usage event's entries sum to zero (the consumer's debit is the
    publisher's and the platform's credit)."""

    event = models.ForeignKey(UsageEvent, on_delete=models.CASCADE, related_name="entries")
    account = models.CharField(max_length=16, choices=LedgerAccount.choices)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, null=True, related_name="+")
    publisher = models.ForeignKey(
        Publisher, on_delete=models.PROTECT, null=True, related_name="ledger_entries"
    )
    amount_micros = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    def __str__(self) -> str:
        return f"{self.account} {self.amount_micros:+d} µ"
