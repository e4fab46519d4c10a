from django.urls import path

from .views import CurrentTenantView

urlpatterns = [path("tenant", CurrentTenantView.as_view(), name="tenant")]
