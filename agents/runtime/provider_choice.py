"""Which provider instance a turn talks to, and with which key.

A tenant's own base URL is called with the tenant's own key only, and is checked like
http_fetch checks URLs (beamclaw.outbound) when saved and on every call. The platform's
key only ever goes to the platform's configured base URL.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import httpx
from django.conf import settings
from django.db.models import OuterRef, QuerySet, Subquery

from agents.models import Agent, ProviderCredential, ProviderName, Turn
from agents.providers import get_provider
from agents.providers.base import PROVIDER_KEY_REQUIRED, Provider, ProviderError, RetryPolicy
from beamclaw.crypto import decrypt
from beamclaw.outbound import AddressPolicy

_PLATFORM_DEFAULTS = {
    ProviderName.OPENAI: ("OPENAI_API_KEY", "OPENAI_BASE_URL"),
    ProviderName.ANTHROPIC: ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"),
}


def tenant_base_url_policy() -> AddressPolicy:
    """Where a tenant's own base URL may point."""
    return AddressPolicy.of(allow_private=settings.PROVIDER_BASE_URL_ALLOW_PRIVATE)


@dataclass(frozen=True)
class SavedCredential:
    """A tenant's ProviderCredential as stored: its key still encrypted."""

    tenant_id: int
    api_key_encrypted: str
    base_url: str


def with_credential(turns: QuerySet[Turn]) -> QuerySet[Turn]:
    """These turns with their agent's saved credential, read in the same query (a turn then
    reads it with no query of its own, and so sees every change made before it started)."""
    saved = ProviderCredential.objects.filter(
        tenant_id=OuterRef("tenant_id"), provider=OuterRef("agent__provider")
    )
    return turns.annotate(
        credential_key=Subquery(saved.values("api_key_encrypted")[:1]),
        credential_url=Subquery(saved.values("base_url")[:1]),
    )


def saved_credential(turn: Turn) -> SavedCredential | None:
    """The credential of the turn's agent: as read by with_credential(), else read now."""
    if hasattr(turn, "credential_key"):
        if turn.credential_key is None:
            return None  # the tenant has none for this provider
        return SavedCredential(turn.tenant_id, turn.credential_key, turn.credential_url)
    row = (
        ProviderCredential.objects.filter(tenant_id=turn.tenant_id, provider=turn.agent.provider)
        .values_list("api_key_encrypted", "base_url")
        .first()
    )
    return SavedCredential(turn.tenant_id, *row) if row else None


@lru_cache(maxsize=1024)
def _decrypted(tenant_id: int, api_key_encrypted: str) -> str:
    # Keyed by the ciphertext itself: saving a key makes a new one (Fernet's IV is random),
    # so no process can miss a change, and there is nothing to invalidate. The tenant is
    # in the key so one tenant's entry can never answer for another's.
    return decrypt(api_key_encrypted)


def provider_for(agent: Agent, credential: SavedCredential | None) -> Provider:
    """The provider for the agent's next model call, with the tenant's saved credential for
    it (or None); ProviderError if it cannot have one."""
    if credential is not None and credential.tenant_id != agent.tenant_id:
        raise ValueError("a credential of another tenant")
    tenant_key = (
        _decrypted(credential.tenant_id, credential.api_key_encrypted) if credential else ""
    ) or None
    tenant_url = (credential.base_url if credential else "") or None
    limits = {
        "timeout": httpx.Timeout(settings.PROVIDER_TIMEOUT, connect=5.0),
        "retry": RetryPolicy(
            max_retries=settings.PROVIDER_MAX_RETRIES,
            backoff_base=settings.PROVIDER_BACKOFF_BASE,
        ),
        "call_timeout": settings.PROVIDER_CALL_DEADLINE,
        "max_response_bytes": settings.PROVIDER_MAX_RESPONSE_BYTES,
        "max_document_bytes": settings.PROVIDER_MAX_DOCUMENT_BYTES,
    }
    if tenant_url is not None:
        if tenant_key is None:
            # Saved before keys were required; never fall back to the platform's key here.
            raise ProviderError(
                PROVIDER_KEY_REQUIRED,
                f"Your {agent.provider} base URL needs your own API key: set api_key with "
                f"PUT /api/v1/providers/{agent.provider}.",
            )
        return get_provider(
            agent.provider,
            api_key=tenant_key,
            base_url=tenant_url,
            address_policy=tenant_base_url_policy(),
            **limits,
        )
    if agent.provider in _PLATFORM_DEFAULTS:
        key_setting, url_setting = _PLATFORM_DEFAULTS[agent.provider]
        return get_provider(
            agent.provider,
            api_key=tenant_key or getattr(settings, key_setting) or None,
            base_url=getattr(settings, url_setting),
            **limits,
        )
    return get_provider(agent.provider, **limits)
