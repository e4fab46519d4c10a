from django.apps import AppConfig


class AgentsConfig(AppConfig):
    name = "agents"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Channel replies are sent when a turn finishes (a telemetry handler), in every
        # process that runs turns.
        from agents.channels import delivery

        delivery.register()
