from django.apps import AppConfig


class FleetConfig(AppConfig):
    name = "fleet"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here, once models are ready: they register Celery signal handlers and
        # control commands, and the worker's steps must be on the app before a worker
        # builds its blueprint (Celery runs django.setup() first, see fleet.worker).
        from beamclaw import metrics
        from beamclaw.celery import app
        from tenants.signals import tenant_created

        from . import worker
        from .metrics import capacity_metrics
        from .queues import announce_new_tenant

        worker.attach(app)
        tenant_created.connect(announce_new_tenant, dispatch_uid="fleet.announce_new_tenant")
        metrics.add_collector(capacity_metrics)
