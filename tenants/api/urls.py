from django.urls import path

from .views import CurrentTenantView, UsageView

urlpatterns = [
    path("tenant", CurrentTenantView.as_view(), name="tenant"),
    path("usage", UsageView.as_view(), name="usage"),
]
