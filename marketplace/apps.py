from django.apps import AppConfig


class MarketplaceConfig(AppConfig):
    name = "marketplace"
    verbose_name = "Marketplace"

    def ready(self) -> None:
        # Models are loaded only now: the turn loop asks this for package-backed turns.
        from agents.runtime import agent_settings

        from .pinning import pin

        agent_settings.install(pin)
