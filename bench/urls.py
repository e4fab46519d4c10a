"""The platform's URLs, then the pipeline floor's (after them, so every platform URL
resolves exactly as in production)."""

from django.urls import path

from beamclaw.urls import handler400, handler403, handler404, handler500, urlpatterns

from . import floor

urlpatterns = [
    *urlpatterns,
    path("bench/floor/<slug:tenant>/sessions/<str:key>/messages", floor.post_message),
]

__all__ = ["handler400", "handler403", "handler404", "handler500", "urlpatterns"]
