"""Publishing package versions, and the publisher's and the platform's actions on them.

Everything is validated before anything is stored: the manifest (schema and rules), its
versions, the artifact (safe to unpack, entry points present), the built-in tools and
provider it names, its sub-agents (visible, not itself, without sub-agents of their own),
and that the version is above every earlier one and not a duplicate of any, yanked or
not. A version, once stored, never changes; only its status does.
"""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.utils import timezone

from agents.models import ProviderName
from agents.tools import registry
from beamclaw.errors import Conflict, Forbidden, InvalidInput, NotFound
from tenants.models import Tenant

from . import installing
from .artifacts import check_entry_points, inspect_artifact
from .manifest import Manifest, check_versions, validate_manifest
from .models import Package, PackageVersion, Publisher, VersionStatus, Visibility
from .selectors import packages_visible_to
from .versions import Version, parse_spec, parse_version, resolve


def claim_publisher(*, tenant: Tenant, handle: str, display_name: str = "") -> Publisher:
    """The tenant's publisher handle: created once, its display name changeable."""
    existing = Publisher.objects.filter(tenant=tenant).first()
    if existing is not None:
        if existing.handle != handle:
            raise Conflict(
                "publisher_exists",
                f"Your tenant already publishes as '{existing.handle}'.",
                details={"field": "handle"},
            )
        existing.display_name = display_name
        existing.save(update_fields=["display_name"])
        return existing
    publisher = Publisher(tenant=tenant, handle=handle, display_name=display_name)
    publisher.full_clean(exclude=["tenant"], validate_unique=False)
    try:
        with transaction.atomic():
            publisher.save()
    except IntegrityError:
        raise Conflict(
            "publisher_handle_taken",
            f"The handle '{handle}' is taken.",
            details={"field": "handle"},
        )
    return publisher


def own_publisher(tenant: Tenant, handle: str) -> Publisher:
    """The tenant's publisher named `handle`; another tenant's answers 404."""
    publisher = Publisher.objects.filter(tenant=tenant, handle=handle).first()
    if publisher is None:
        raise NotFound(
            "publisher_not_found",
            f"Your tenant does not publish as '{handle[:63]}'; claim a handle with "
            "PUT /api/v1/publisher first.",
        )
    return publisher


def _check_platform_names(manifest: Manifest) -> None:
    known = set(registry.names())
    for position, name in enumerate(manifest.builtin_tools):
        if name not in known:
            raise InvalidInput(
                "unknown_builtin_tool",
                f"builtin_tools[{position}]: there is no built-in tool '{name}'.",
                details={"field": f"builtin_tools[{position}]"},
            )
    fixed = manifest.fixed_model
    if fixed is not None and fixed[0] not in ProviderName.values:
        raise InvalidInput(
            "unknown_provider",
            f"model.provider: there is no provider '{fixed[0]}'.",
            details={"field": "model.provider"},
        )


def _check_sub_agents(tenant: Tenant, package_name: tuple[str, str], manifest: Manifest, specs):
    """Each sub-agent package exists, is visible to the publisher, is not this package, and
    its version in range has no sub-agents of its own (composition is one level deep)."""
    for sub, spec in zip(manifest.sub_agents, specs, strict=True):
        field = f"sub_agents[{sub.index}].package"
        if (sub.publisher, sub.package) == package_name:
            raise InvalidInput(
                "sub_agent_cycle",
                f"{field}: a package cannot be its own sub-agent.",
                details={"field": field},
            )
        package = (
            packages_visible_to(tenant)
            .filter(publisher__handle=sub.publisher, slug=sub.package)
            .first()
        )
        if package is None:
            raise InvalidInput(
                "sub_agent_not_found",
                f"{field}: there is no package '{sub.publisher}/{sub.package}'.",
                details={"field": field},
            )
        chosen = resolve(spec, list(package.versions.defer("artifact")))
        if chosen is None:
            raise InvalidInput(
                "no_matching_version",
                f"sub_agents[{sub.index}].version: no installable version of {package} "
                f"matches '{spec}'.",
                details={"field": f"sub_agents[{sub.index}].version"},
            )
        if chosen.manifest.get("sub_agents"):
            raise InvalidInput(
                "sub_agent_too_deep",
                f"{field}: {package}@{chosen.version} has sub-agents of its own; sub-agents "
                "go one level deep.",
                details={"field": field},
            )


def publish_version(
    *,
    tenant: Tenant,
    publisher_handle: str,
    slug: str,
    manifest_data: object,
    artifact: bytes | None = None,
    visibility: str | None = None,
) -> PackageVersion:
    """Validate everything, then store the version (creating the package on its first
    version) and move every installation whose spec now picks it (hot upgrade)."""
    publisher = own_publisher(tenant, publisher_handle)
    manifest = validate_manifest(manifest_data)
    parsed = check_versions(manifest, parse_version=parse_version, parse_spec=parse_spec)
    if manifest.name != slug:
        raise InvalidInput(
            "manifest_name_mismatch",
            f"name: the manifest names '{manifest.name}', published as '{slug[:63]}'.",
            details={"field": "name"},
        )
    if visibility is not None and visibility not in Visibility.values:
        raise InvalidInput(
            "invalid_visibility",
            f"visibility must be one of {', '.join(Visibility.values)}.",
            details={"field": "visibility"},
        )
    _check_platform_names(manifest)
    inspected = inspect_artifact(artifact) if artifact else None
    check_entry_points(inspected, manifest)
    _check_sub_agents(tenant, (publisher.handle, slug), manifest, parsed.sub_agent_specs)
    version: Version = parsed.version

    with transaction.atomic():
        package, created = Package.objects.select_for_update().get_or_create(
            publisher=publisher,
            slug=slug,
            defaults={"summary": manifest.data["summary"], "visibility": visibility or "public"},
        )
        _check_version_is_new(package, version)
        published = PackageVersion.objects.create(
            package=package,
            version=str(version),
            identity=version.identity,
            manifest=manifest.data,
            manifest_sha256=manifest.digest,
            artifact=artifact if artifact else None,
            artifact_sha256=inspected.sha256 if inspected else "",
            min_platform_version=manifest.data.get("min_platform_version", ""),
        )
        if not created:
            package.summary = manifest.data["summary"]
            if visibility is not None:
                package.visibility = visibility
            package.save(update_fields=["summary", "visibility", "updated_at"])
        installing.follow_spec_everywhere(package)
    return published


def _check_version_is_new(package: Package, version: Version) -> None:
    """Above every earlier version (yanked and revoked ones count) and not one of them."""
    earlier = [parse_version(text) for text in package.versions.values_list("version", flat=True)]
    if any(e.identity == version.identity for e in earlier):
        raise Conflict(
            "version_exists",
            f"{package} already has version {version.identity}; versions are never reused.",
            details={"field": "version"},
        )
    highest = max(earlier, default=None)
    if highest is not None and version < highest:
        raise Conflict(
            "version_not_newer",
            f"Version {version} is below {package}'s latest, {highest}; publish a higher one.",
            details={"field": "version"},
        )


def set_status(
    *, version: PackageVersion, status: str, reason: str = "", staff: bool = False
) -> PackageVersion:
    """Yank or un-yank (the publisher), revoke (staff only: final). Installations move
    off a version their spec no longer picks, at their next turn."""
    if version.status == VersionStatus.REVOKED:
        raise Conflict("version_revoked", f"{version} was revoked; its status is final.")
    if status == VersionStatus.REVOKED and not staff:
        raise Forbidden("staff_only", "Only the platform's staff can revoke a version.")
    if status == VersionStatus.REVOKED and not reason:
        raise InvalidInput(
            "reason_required", "Say why the version is revoked.", details={"field": "reason"}
        )
    with transaction.atomic():
        PackageVersion.objects.filter(pk=version.pk).update(
            status=status, status_reason=reason, status_changed_at=timezone.now()
        )
        version.refresh_from_db(fields=["status", "status_reason", "status_changed_at"])
        installing.follow_spec_everywhere(version.package)
    return version
