"""The operator endpoints, under /api/v1/ops/."""

from django.urls import path

from .views import CapacityView, WorkerListView

urlpatterns = [
    path("workers", WorkerListView.as_view(), name="ops-workers"),
    path("capacity", CapacityView.as_view(), name="ops-capacity"),
]
