"""Read-side queries for the marketplace: the catalogue, packages as one tenant may see
them, and a tenant's installations.

An unlisted package is its publisher's own: to every other tenant it answers 404, exactly
like a package that does not exist.
"""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Count, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from beamclaw.errors import first_or_not_found
from tenants.models import Tenant

from .models import (
    Installation,
    Package,
    PackageVersion,
    UsageEvent,
    UsageKind,
    VersionStatus,
    Visibility,
)
from .versions import parse_spec, parse_version, resolve

CALLS_WINDOW = timedelta(days=30)


def packages_visible_to(tenant: Tenant | None) -> QuerySet[Package]:
    """Public packages, and the tenant's own unlisted ones."""
    visible = Q(visibility=Visibility.PUBLIC)
    if tenant is not None:
        visible |= Q(publisher__tenant=tenant)
    return Package.objects.filter(visible).select_related("publisher")


def catalogue(tenant: Tenant | None, *, search: str = "", publisher: str = "") -> QuerySet[Package]:
    """Listed packages with a version that can be installed, most installed first, each
    with `install_count` and `calls_30d` (metered calls in the last 30 days)."""
    packages = (
        Package.objects.filter(visibility=Visibility.PUBLIC)
        .filter(versions__status__in=[VersionStatus.ACTIVE, VersionStatus.YANKED])
        .select_related("publisher")
        .distinct()
    )
    if search:
        packages = packages.filter(
            Q(slug__icontains=search)
            | Q(summary__icontains=search)
            | Q(publisher__handle__icontains=search)
        )
    if publisher:
        packages = packages.filter(publisher__handle=publisher)
    return with_counts(packages)


def with_counts(packages: QuerySet[Package]) -> QuerySet[Package]:
    """Each package with `install_count` and `calls_30d` (metered model and tool calls in
    the last 30 days), each counted in a subquery of its own (one join of both would
    count installations times calls)."""
    since = timezone.now() - CALLS_WINDOW
    installs = (
        Installation.objects.filter(package=OuterRef("pk"))
        .order_by()
        .values("package")
        .annotate(n=Count("pk"))
        .values("n")
    )
    calls = (
        UsageEvent.objects.filter(package_version__package=OuterRef("pk"), created_at__gte=since)
        .exclude(kind=UsageKind.TURN)
        .order_by()
        .values("package_version__package")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return packages.annotate(
        install_count=Coalesce(Subquery(installs), 0),
        calls_30d=Coalesce(Subquery(calls), 0),
    )


def get_package(tenant: Tenant | None, publisher: str, slug: str) -> Package:
    return first_or_not_found(
        with_counts(packages_visible_to(tenant)),
        "package_not_found",
        f"There is no package '{publisher[:63]}/{slug[:63]}'.",
        publisher__handle=publisher,
        slug=slug,
    )


def versions_of(package: Package) -> list[PackageVersion]:
    """Every version of the package (revoked ones included, marked), newest first."""
    versions = list(
        package.versions.only("id", "version", "status", "status_reason", "published_at")
    )
    versions.sort(key=lambda v: parse_version(v.version), reverse=True)
    return versions


def get_version(package: Package, version: str) -> PackageVersion:
    return first_or_not_found(
        package.versions.defer("artifact"),
        "version_not_found",
        f"Package {package} has no version '{version[:64]}'.",
        version=version,
    )


def installations_of(tenant: Tenant) -> QuerySet[Installation]:
    return Installation.objects.filter(tenant=tenant).select_related(
        "agent", "package__publisher", "version", "pending_version", "previous_version"
    )


def get_installation(tenant: Tenant, installation_id: int) -> Installation:
    return first_or_not_found(
        installations_of(tenant),
        "installation_not_found",
        f"There is no installation {installation_id}.",
        pk=installation_id,
    )


def latest_versions(packages: list[Package]) -> dict[int, str]:
    """Each package's highest installable release (what `latest` installs), by package id."""
    by_package: dict[int, list[PackageVersion]] = {}
    for version in PackageVersion.objects.filter(package__in=packages).only(
        "package_id", "version", "status"
    ):
        by_package.setdefault(version.package_id, []).append(version)
    latest = parse_spec("latest")
    return {
        package_id: chosen.version
        for package_id, versions in by_package.items()
        if (chosen := resolve(latest, versions)) is not None
    }
