"""URLs that fail on purpose, for the error-shape tests."""

from django.urls import include, path
from rest_framework.views import APIView


class Boom(APIView):
    def get(self, request):
        raise RuntimeError("secret detail")


def plain_boom(request):
    raise RuntimeError("secret detail")


urlpatterns = [
    path("boom", Boom.as_view()),
    path("plain-boom", plain_boom),
    path("", include("beamclaw.urls")),
]
handler500 = "beamclaw.api.errors.server_error"
