from django.urls import path

from . import views

PACKAGE = "packages/<slug:publisher>/<slug:slug>"
ENTRY = "marketplace/<slug:publisher>/<slug:slug>"

urlpatterns = [
    path("publisher", views.PublisherView.as_view(), name="publisher"),
    path(PACKAGE, views.PackageView.as_view(), name="package"),
    path(f"{PACKAGE}/versions", views.PackageVersionsView.as_view(), name="package-versions"),
    path(
        f"{PACKAGE}/versions/<version:version>/yank",
        views.VersionYankView.as_view(),
        name="package-version-yank",
    ),
    path(
        f"{PACKAGE}/versions/<version:version>/unyank",
        views.VersionUnyankView.as_view(),
        name="package-version-unyank",
    ),
    path("marketplace", views.CatalogueView.as_view(), name="catalogue"),
    path(ENTRY, views.CatalogueEntryView.as_view(), name="catalogue-entry"),
    path(
        f"{ENTRY}/versions/<version:version>",
        views.CatalogueVersionView.as_view(),
        name="catalogue-version",
    ),
    path("installations", views.InstallationListView.as_view(), name="installation-list"),
    path(
        "installations/<id:installation_id>",
        views.InstallationDetailView.as_view(),
        name="installation-detail",
    ),
    path(
        "installations/<id:installation_id>/upgrade",
        views.InstallationUpgradeView.as_view(),
        name="installation-upgrade",
    ),
    path(
        "installations/<id:installation_id>/rollback",
        views.InstallationRollbackView.as_view(),
        name="installation-rollback",
    ),
    path(
        "installations/<id:installation_id>/consent",
        views.InstallationConsentView.as_view(),
        name="installation-consent",
    ),
]
