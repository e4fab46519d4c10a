"""Installing a package as a tenant's agent, and moving an installation between versions.

An installation follows a spec (`^1.2`, `==1.2.0`, `latest`, ...). Moving it to another
version changes one row in one transaction: versions are immutable, so nothing else has
to change and no process restarts. A move that widens permissions or price waits in
`pending_consent` until the tenant consents.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from django.core.exceptions import ValidationError
from django.db import transaction

from agents.models import Agent, ProviderName
from agents.services import create_agent, delete_agent, update_agent
from beamclaw.errors import Conflict, InvalidInput
from tenants.models import Tenant

from . import consent
from .models import Installation, InstallationState, Package, PackageVersion, VersionStatus
from .versions import VersionSpec, parse_spec, resolve


def resolve_version(package: Package, spec: VersionSpec) -> PackageVersion:
    """The version of `package` that `spec` picks now (never a revoked one; a yanked one
    only when pinned exactly), or InvalidInput `no_matching_version`. Only the chosen
    version's manifest is read."""
    candidates = list(package.versions.only("id", "version", "status"))
    chosen = resolve(spec, candidates)
    if chosen is not None:
        chosen = PackageVersion.objects.defer("artifact").get(pk=chosen.pk)
    if chosen is None:
        raise InvalidInput(
            "no_matching_version",
            f"No installable version of {package} matches '{spec}'.",
            details={"field": "version"},
        )
    return chosen


def agent_fields(manifest: dict, *, provider: str = "", model: str = "") -> dict:
    """The agent settings a version gives its installation's agent; the installer's
    provider and model, when set, win over the manifest's."""
    fixed = manifest.get("model") or {}
    fields = {
        "system_prompt": manifest.get("system_prompt", ""),
        "tools": sorted(manifest.get("builtin_tools", [])),
    }
    if fixed.get("provider"):
        fields["provider"], fields["model"] = fixed["provider"], fixed["name"]
    if provider:
        fields["provider"] = provider
    if model:
        fields["model"] = model
    return fields


def installation_fields(installation: Installation, manifest: dict) -> dict:
    return agent_fields(
        manifest, provider=installation.provider_override, model=installation.model_override
    )


def _spec(text: str) -> VersionSpec:
    spec = parse_spec(text)
    if len(str(spec)) > Installation._meta.get_field("spec").max_length:
        raise InvalidInput(
            "invalid_version_spec", "The version spec is too long.", details={"field": "version"}
        )
    return spec


@contextlib.contextmanager
def _field_errors() -> Iterator[None]:
    """An agent setting the model refuses (from a manifest or the installer) is a 400."""
    try:
        yield
    except ValidationError as error:
        field, messages = next(iter(error.message_dict.items()))
        raise InvalidInput(
            "invalid_agent_settings", f"{field}: {' '.join(messages)}", details={"field": field}
        )


def install(
    *,
    tenant: Tenant,
    package: Package,
    spec: str = "latest",
    agent_slug: str = "",
    provider: str = "",
    model: str = "",
    spend_cap_micros: int | None = None,
) -> Installation:
    """A new agent of `tenant` backed by `package` at the version `spec` picks. The
    permissions that version asks for are granted (the caller echoes them for consent)."""
    parsed = _spec(spec)
    version = resolve_version(package, parsed)
    if provider and provider not in ProviderName.values:
        raise InvalidInput(
            "invalid_provider",
            f"Unknown provider '{provider[:32]}'.",
            details={"field": "provider"},
        )
    fields = agent_fields(version.manifest, provider=provider, model=model)
    with transaction.atomic(), _field_errors():
        agent = create_agent(
            tenant=tenant,
            slug=agent_slug or package.slug,
            name=str(package),
            package_backed=True,
            **fields,
        )
        return Installation.objects.create(
            provider_override=provider,
            model_override=model,
            tenant=tenant,
            agent=agent,
            package=package,
            spec=str(parsed),
            version=version,
            granted_permissions=version.manifest.get("permissions", {}),
            spend_cap_micros=spend_cap_micros,
        )


def preview(installation: Installation, target: PackageVersion) -> consent.VersionDiff:
    return consent.diff(
        installation.version.version,
        installation.version.manifest,
        target.version,
        target.manifest,
        installation.granted_permissions,
    )


def _move(installation: Installation, target: PackageVersion, *, consented: bool) -> None:
    """Point the installation (and its agent's settings) at `target`, in the caller's
    transaction."""
    if target.pk != installation.version_id:
        installation.previous_version = installation.version
        installation.version = target
    if consented:
        installation.granted_permissions = _union(
            installation.granted_permissions, target.manifest.get("permissions", {})
        )
    installation.pending_version = None
    installation.state = InstallationState.ACTIVE
    installation.save()
    agent: Agent = installation.agent
    update_agent(agent=agent, **installation_fields(installation, target.manifest))


def _union(granted: dict, wanted: dict) -> dict:
    merged = dict(granted)
    for name, value in consent.permissions_added(granted, wanted).items():
        merged[name] = (
            sorted(set(merged.get(name) or []) | set(value)) if isinstance(value, list) else value
        )
    return merged


def upgrade(
    *, installation: Installation, spec: str | None = None, dry_run: bool = False
) -> tuple[consent.VersionDiff, Installation]:
    """Move to the version `spec` (or the installation's own spec) picks now. Asking for it
    is consent: the move happens even if it widens permissions or price. With `dry_run`,
    only the diff."""
    parsed = _spec(spec) if spec is not None else parse_spec(installation.spec)
    target = resolve_version(installation.package, parsed)
    diff = preview(installation, target)
    if dry_run:
        return diff, installation
    with transaction.atomic():
        installation = Installation.objects.select_for_update().get(pk=installation.pk)
        installation.spec = str(parsed)
        _move(installation, target, consented=True)
    return diff, installation


def rollback(*, installation: Installation) -> Installation:
    """Back to the version before the last move; the spec becomes that exact version, so
    the installation stays there until upgraded on purpose."""
    with transaction.atomic():
        installation = Installation.objects.select_for_update().get(pk=installation.pk)
        previous = installation.previous_version
        if previous is None:
            raise Conflict("nothing_to_roll_back", "This installation has not been upgraded.")
        if previous.status == VersionStatus.REVOKED:
            raise Conflict("version_revoked", f"Version {previous.version} was revoked.")
        installation.spec = f"=={previous.version}"
        _move(installation, previous, consented=False)
    return installation


def consent_to_pending(*, installation: Installation) -> Installation:
    with transaction.atomic():
        installation = Installation.objects.select_for_update().get(pk=installation.pk)
        target = installation.pending_version
        if target is None:
            raise Conflict("nothing_pending", "No version of this installation waits for consent.")
        if target.status == VersionStatus.REVOKED:
            raise Conflict("version_revoked", f"Version {target.version} was revoked.")
        _move(installation, target, consented=True)
    return installation


def follow_spec(installation: Installation, pick: PackageVersion | None) -> None:
    """After a publish, yank or revoke: move the installation to `pick`, what its spec picks
    now, unless that widens what the tenant consented to (then it waits in
    pending_consent). Runs in the caller's transaction."""
    if pick is None:
        return  # nothing in range any more (every version yanked): keep the current one
    if pick.pk == installation.version_id and installation.pending_version_id is None:
        return
    target = PackageVersion.objects.defer("artifact").get(pk=pick.pk)
    if preview(installation, target).widens:
        installation.pending_version = target
        installation.state = InstallationState.PENDING_CONSENT
        installation.save(update_fields=["pending_version", "state", "updated_at"])
    else:
        _move(installation, target, consented=False)


def follow_spec_everywhere(package: Package) -> None:
    """follow_spec for every installation of the package; each distinct spec is resolved
    once. Runs in the caller's transaction (which holds the package's row)."""
    candidates = list(package.versions.only("id", "version", "status"))
    picks: dict[str, PackageVersion | None] = {}
    installations = (
        Installation.objects.select_for_update(of=("self",))
        .filter(package=package)
        .select_related("agent", "version", "package")
    )
    for installation in installations:
        if installation.spec not in picks:
            picks[installation.spec] = resolve(parse_spec(installation.spec), candidates)
        follow_spec(installation, picks[installation.spec])


def uninstall(*, installation: Installation) -> None:
    with transaction.atomic():
        agent = installation.agent
        installation.delete()
        delete_agent(agent=agent)
