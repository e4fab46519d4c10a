"""Creating tenants and issuing, checking and revoking their API keys."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from beamclaw.errors import DomainError

from .models import ApiKey, Tenant
from .signals import tenant_created

KEY_PREFIX = "bc"
# last_used_at is written at most this often per key, so auth stays read-only on the hot path.
LAST_USED_RESOLUTION = timedelta(minutes=1)


LIMIT_FIELDS = (
    "requests_per_minute",
    "tokens_per_day",
    "tokens_per_month",
    "max_concurrent_turns",
    "max_sessions",
    "max_cron_jobs",
    "min_cron_interval_seconds",
    "max_concurrent_streams",
)


@dataclass(frozen=True)
class IssuedKey:
    api_key: ApiKey
    secret: str  # the whole key, shown once; never stored


def create_tenant(*, slug: str, name: str = "", **limits: int) -> Tenant:
    """Create a tenant and tell running workers to consume its queue (tenant_created)."""
    tenant = Tenant(slug=slug, name=name or slug, **limits)
    tenant.full_clean()
    with transaction.atomic():
        tenant.save()
        transaction.on_commit(lambda: tenant_created.send(sender=Tenant, tenant=tenant))
    return tenant


def set_limits(*, tenant: Tenant, **changes: int | bool) -> Tenant:
    """Change limits (or `is_active`); the limiter reads them on every call, no restart."""
    for field, value in changes.items():
        setattr(tenant, field, value)
    tenant.full_clean()
    tenant.save(update_fields=[*changes, "updated_at"])
    return tenant


def hash_secret(secret: str) -> str:
    # The secret has 256 bits of entropy, so a plain SHA-256 cannot be brute-forced;
    # a slow password hash would only slow down every request.
    return hashlib.sha256(secret.encode()).hexdigest()


def issue_api_key(*, tenant: Tenant, name: str = "") -> IssuedKey:
    prefix = secrets.token_hex(4)
    secret = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    api_key = ApiKey.objects.create(
        tenant=tenant, name=name, prefix=prefix, secret_hash=hash_secret(secret)
    )
    return IssuedKey(api_key=api_key, secret=secret)


def revoke_api_key(*, api_key: ApiKey) -> ApiKey:
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
    return api_key


class MalformedKey(ValueError):
    pass


def find_api_key(secret: str) -> ApiKey | None:
    """The key this secret belongs to (revoked or not), or None; constant-time compare."""
    parts = secret.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or not parts[1] or not parts[2]:
        raise MalformedKey("not a BeamClaw API key")
    api_key = ApiKey.objects.select_related("tenant").filter(prefix=parts[1]).first()
    if api_key is None or not hmac.compare_digest(api_key.secret_hash, hash_secret(secret)):
        return None
    return api_key


class ApiKeyRefused(DomainError):
    """The key lets no one in; `code` is the error a request with it gets."""

    status = 401


def admitted_api_key(secret: str) -> ApiKey:
    """The key this secret lets in, or ApiKeyRefused: malformed, unknown, revoked, or its
    tenant suspended (a 403: the key itself is good)."""
    try:
        api_key = find_api_key(secret)
    except MalformedKey:
        raise ApiKeyRefused("invalid_authorization_header", "That is not a BeamClaw API key.")
    if api_key is None:
        raise ApiKeyRefused("invalid_api_key", "Unknown API key.")
    if api_key.is_revoked:
        raise ApiKeyRefused("api_key_revoked", "This API key has been revoked.")
    if not api_key.tenant.is_active:
        raise ApiKeyRefused("tenant_suspended", "This tenant is suspended.", status=403)
    return api_key


def touch_api_key(api_key: ApiKey) -> None:
    now = timezone.now()
    if api_key.last_used_at is None or now - api_key.last_used_at > LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now
