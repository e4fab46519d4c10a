"""The project's own app: wires the telemetry handlers into every process at startup, and
the throttled login form into the admin."""

from django.apps import AppConfig
from django.core.checks import Tags, register


class BeamclawConfig(AppConfig):
    name = "beamclaw"

    def ready(self) -> None:
        # Registers the path converters, before any URLconf is imported.
        import beamclaw.api.converters  # noqa: F401

        # Every process (web, workers, beat, commands) gets the same handlers; register()
        # ignores a handler it already has, so a second ready() adds nothing. The metrics
        # module is imported only now, after settings exported PROMETHEUS_MULTIPROC_DIR.
        # Telemetry only counts and logs: money (usage records) and replies are written
        # by the turn loop itself, in its fenced transactions.
        from beamclaw import checks, event_log, metrics, telemetry

        telemetry.register(metrics.observe)
        telemetry.register(event_log.log_event)
        # Django's deploy checks for the middleware we run under our own names.
        register(checks.check_standing_in_middleware, Tags.security, deploy=True)

        # The form imports the auth models, which exist only once the apps are loaded.
        from django.contrib import admin

        from beamclaw.admin_login import ThrottledAdminLoginForm

        admin.site.login_form = ThrottledAdminLoginForm
