from django.contrib import admin
from django.urls import include, path

from beamclaw import health, metrics

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("", include("fleet.urls")),  # the admin's workers page, before the admin's URLs
    path("admin/", admin.site.urls),
    path("api/", include("beamclaw.api.urls")),  # schema, docs and the /api/v1/ index
    path("api/v1/ops/", include("fleet.api.urls")),
    path("api/v1/", include("tenants.api.urls")),
    path("api/v1/", include("agents.api.urls")),
    path("api/v1/", include("marketplace.api.urls")),
    path("hooks/", include("agents.channels.api.urls")),
    path("marketplace/", include("marketplace.urls")),
]

handler400 = "beamclaw.api.errors.bad_request"
handler403 = "beamclaw.api.errors.permission_denied"
handler404 = "beamclaw.api.errors.not_found"
handler500 = "beamclaw.api.errors.server_error"
