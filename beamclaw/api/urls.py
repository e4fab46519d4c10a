"""The API's own pages: the OpenAPI schema, its Swagger UI and the /api/v1/ index."""

from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from .index import ApiIndexView

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("v1/", ApiIndexView.as_view(), name="api-index"),
]
