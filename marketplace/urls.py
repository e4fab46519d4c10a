from django.urls import path

from . import pages

app_name = "marketplace"

urlpatterns = [
    path("", pages.catalogue, name="catalogue"),
    path("<slug:publisher>/<slug:slug>/", pages.package, name="package"),
]
