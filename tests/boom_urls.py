"""URLs that fail on purpose, for the error-shape tests."""

from django.urls import include, path
from rest_framework.views import APIView


class Boom(APIView):
    def get(self, request):
        raise RuntimeError("secret detail")


class Busy(APIView):
    """What Django raises when psycopg's pool has no connection free in time."""

    def get(self, request):
        from django.db import OperationalError
        from psycopg_pool import PoolTimeout

        try:
            raise PoolTimeout("couldn't get a connection after 30.00 sec")
        except PoolTimeout as exc:
            raise OperationalError(str(exc)) from exc


def plain_boom(request):
    raise RuntimeError("secret detail")


urlpatterns = [
    path("boom", Boom.as_view()),
    path("busy", Busy.as_view()),
    path("plain-boom", plain_boom),
    path("", include("beamclaw.urls")),
]
handler500 = "beamclaw.api.errors.server_error"
