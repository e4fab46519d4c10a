"""Model providers by name. Adding one is a new module here plus one line in PROVIDERS."""

from __future__ import annotations

from typing import Any

from agents.providers.anthropic import AnthropicProvider
from agents.providers.base import Provider
from agents.providers.offline import OfflineProvider
from agents.providers.openai import OpenAIProvider

PROVIDERS: dict[str, type[Provider]] = {
    "openai": OpenAIProvider,
    "anthropic": AnthropicProvider,
    "offline": OfflineProvider,
}


def get_provider(name: str, **kwargs: Any) -> Provider:
    """A provider instance by registry name; kwargs go to Provider.__init__."""
    try:
        provider_class = PROVIDERS[name]
    except KeyError:
        known = ", ".join(sorted(PROVIDERS))
        raise ValueError(f"unknown provider {name!r} (known: {known})") from None
    return provider_class(**kwargs)
