"""Which provider instance a turn talks to: the tenant's own credential, else the platform's."""

from __future__ import annotations

import httpx
from django.conf import settings

from agents.models import Agent, ProviderCredential, ProviderName
from agents.providers import get_provider
from agents.providers.base import Provider, RetryPolicy
from beamclaw.crypto import decrypt

_PLATFORM_DEFAULTS = {
    ProviderName.OPENAI: ("OPENAI_API_KEY", "OPENAI_BASE_URL"),
    ProviderName.ANTHROPIC: ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"),
}


def provider_for(agent: Agent) -> Provider:
    api_key = base_url = None
    credential = ProviderCredential.objects.filter(
        tenant_id=agent.tenant_id, provider=agent.provider
    ).first()
    if credential is not None:
        api_key = decrypt(credential.api_key_encrypted) or None
        base_url = credential.base_url or None
    if agent.provider in _PLATFORM_DEFAULTS:
        key_setting, url_setting = _PLATFORM_DEFAULTS[agent.provider]
        api_key = api_key or getattr(settings, key_setting) or None
        base_url = base_url or getattr(settings, url_setting)
    return get_provider(
        agent.provider,
        api_key=api_key,
        base_url=base_url,
        timeout=httpx.Timeout(settings.PROVIDER_TIMEOUT, connect=5.0),
        retry=RetryPolicy(
            max_retries=settings.PROVIDER_MAX_RETRIES,
            backoff_base=settings.PROVIDER_BACKOFF_BASE,
        ),
    )
