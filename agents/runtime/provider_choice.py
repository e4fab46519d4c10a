"""Which provider instance a turn talks to, and with which key.

A tenant's own base URL is called with the tenant's own key only, and is checked like
http_fetch checks URLs (beamclaw.outbound) when saved and on every call. The platform's
key only ever goes to the platform's configured base URL.
"""

from __future__ import annotations

import httpx
from django.conf import settings

from agents.models import Agent, ProviderCredential, ProviderName
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


def provider_for(agent: Agent) -> Provider:
    """The provider for the agent's next model call; ProviderError if it cannot have one."""
    credential = ProviderCredential.objects.filter(
        tenant_id=agent.tenant_id, provider=agent.provider
    ).first()
    tenant_key = (decrypt(credential.api_key_encrypted) if credential else "") or None
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
