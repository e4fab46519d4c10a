from django.apps import AppConfig


class AgentsConfig(AppConfig):
    name = "agents"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Connects the receiver that drops a deleted CronJob's beat entry; the models
        # must be loaded first, so this cannot happen at module level.
        from agents.cron import beat  # noqa: F401
