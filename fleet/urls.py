"""The admin's workers page (linked from the admin index), before the admin's own URLs."""

from django.contrib import admin
from django.urls import path

from .admin import workers_admin_view

urlpatterns = [
    path("admin/workers/", admin.site.admin_view(workers_admin_view), name="admin-workers"),
]
