from django.apps import AppConfig

from beamclaw import metrics, telemetry
from beamclaw.celery import app
from tenants.signals import tenant_created


class FleetConfig(AppConfig):
    name = "fleet"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here, once models are ready: they register Celery signal handlers and
        # control commands, and the worker's steps must be on the app before a worker
        # builds its blueprint (Celery runs django.setup() first, see fleet.worker).
        from . import worker
        from .metrics import capacity_metrics
        from .queues import announce_new_tenant
        from .registry import observe_provider_call

        worker.attach(app)
        tenant_created.connect(announce_new_tenant, dispatch_uid="fleet.announce_new_tenant")
        metrics.add_collector(capacity_metrics)
        telemetry.register(observe_provider_call, "provider.call")
