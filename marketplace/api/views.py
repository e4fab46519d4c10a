"""The marketplace API: publish and manage package versions, browse the catalogue,
install packages as agents and move installations between versions.

Views parse input, call a service or selector, and render.
"""

from __future__ import annotations

import json
import re

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from beamclaw.api.parsers import JSONParser
from beamclaw.api.validation import validated
from beamclaw.errors import InvalidInput, NotFound, TooLarge
from marketplace import installing, publishing, selectors
from marketplace.artifacts import MAX_COMPRESSED_BYTES
from marketplace.manifest_schema import MAX_MANIFEST_BYTES
from marketplace.models import Publisher, VersionStatus
from tenants.api.auth import request_tenant

from .serializers import (
    CatalogueQuerySerializer,
    InstallationSerializer,
    InstallSerializer,
    PackageDetailSerializer,
    PackageSerializer,
    PackageUpdateSerializer,
    PublisherSerializer,
    PublishOptionsSerializer,
    PublishSerializer,
    StatusChangeSerializer,
    UpgradeSerializer,
    VersionSerializer,
)

# A publish request holds a manifest, an artifact and a little multipart framing; anything
# larger is refused before its body is read.
MAX_PUBLISH_BYTES = MAX_COMPRESSED_BYTES + MAX_MANIFEST_BYTES + 64 * 1024

INVALID = OpenApiResponse(description="The input is invalid; `code` names the problem.")
NOT_FOUND = OpenApiResponse(description="Not found (or not visible to your tenant).")

# --- Publishing -----------------------------------------------------------------------


class PublisherView(APIView):
    """Your tenant's publisher handle: packages are named `<handle>/<slug>`."""

    @extend_schema(responses={200: PublisherSerializer, 404: NOT_FOUND})
    def get(self, request):
        publisher = Publisher.objects.filter(tenant=request_tenant(request)).first()
        if publisher is None:
            raise NotFound("publisher_not_found", "Your tenant has no publisher handle yet.")
        return Response(PublisherSerializer(publisher).data)

    @extend_schema(
        request=PublisherSerializer,
        responses={
            200: PublisherSerializer,
            409: OpenApiResponse(
                description="`publisher_exists` (you have another handle) or "
                "`publisher_handle_taken`."
            ),
        },
    )
    def put(self, request):
        data = validated(PublisherSerializer(data=request.data), codes={"handle": "invalid_handle"})
        publisher = publishing.claim_publisher(
            tenant=request_tenant(request),
            handle=data["handle"],
            display_name=data.get("display_name", ""),
        )
        return Response(PublisherSerializer(publisher).data)


def _manifest_of(value: object) -> object:
    """The manifest from a JSON body (an object) or a multipart field/file (JSON text)."""
    if hasattr(value, "read"):
        value = value.read(MAX_MANIFEST_BYTES + 1)
        if len(value) > MAX_MANIFEST_BYTES:
            raise TooLarge("manifest_too_large", "The manifest file is too large.")
    if value is None:
        raise InvalidInput(
            "manifest_required", "Send the package's manifest.", details={"field": "manifest"}
        )
    if isinstance(value, bytes | str):
        try:
            return json.loads(value)
        except RecursionError:
            raise InvalidInput(
                "manifest_too_deep", "manifest: nested too deep.", details={"field": "manifest"}
            )
        except ValueError as exc:
            raise InvalidInput(
                "invalid_manifest", f"manifest: not JSON ({exc}).", details={"field": "manifest"}
            )
    return value


def _artifact_of(upload) -> bytes | None:
    if upload is None:
        return None
    if upload.size > MAX_COMPRESSED_BYTES:
        raise TooLarge(
            "artifact_too_large",
            f"The artifact is over {MAX_COMPRESSED_BYTES // (1024 * 1024)} MiB.",
            details={"field": "artifact"},
        )
    return upload.read()


class PackageVersionsView(APIView):
    """Publish a version of one of your packages (the package is created with its first
    version); list its versions."""

    parser_classes = [JSONParser, MultiPartParser]

    @extend_schema(
        request={"application/json": PublishSerializer, "multipart/form-data": PublishSerializer},
        responses={
            201: VersionSerializer,
            400: INVALID,
            404: NOT_FOUND,
            409: OpenApiResponse(description="`version_exists` or `version_not_newer`."),
            413: OpenApiResponse(description="`artifact_too_large`"),
        },
    )
    def post(self, request, publisher: str, slug: str):
        length = request.META.get("CONTENT_LENGTH") or ""
        if not re.fullmatch(r"[0-9]{1,12}", length):
            raise InvalidInput(
                "length_required", "Send the upload with a Content-Length.", status=411
            )
        if int(length) > MAX_PUBLISH_BYTES:
            raise TooLarge(
                "upload_too_large",
                f"A publish request is at most {MAX_PUBLISH_BYTES // 1024} KiB.",
            )
        data = validated(PublishOptionsSerializer(data=request.data))
        manifest = request.FILES.get("manifest") or request.data.get("manifest")
        version = publishing.publish_version(
            tenant=request_tenant(request),
            publisher_handle=publisher,
            slug=slug,
            manifest_data=_manifest_of(manifest),
            artifact=_artifact_of(data.get("artifact")),
            visibility=data.get("visibility"),
        )
        return Response(VersionSerializer(version).data, status=status.HTTP_201_CREATED)


class PackageView(APIView):
    """Change one of your packages: its visibility, or a deprecation message."""

    @extend_schema(request=PackageUpdateSerializer, responses={200: PackageDetailSerializer})
    def patch(self, request, publisher: str, slug: str):
        tenant = request_tenant(request)
        package = selectors.get_package(tenant, publisher, slug)
        publishing.own_publisher(tenant, package.publisher.handle)
        data = validated(PackageUpdateSerializer(data=request.data))
        for name, value in data.items():
            setattr(package, name, value)
        package.save(update_fields=[*data, "updated_at"])
        return Response(_package_detail(package))


def _own_version(request, publisher: str, slug: str, version: str):
    tenant = request_tenant(request)
    package = selectors.get_package(tenant, publisher, slug)
    publishing.own_publisher(tenant, package.publisher.handle)
    return selectors.get_version(package, version)


class VersionYankView(APIView):
    """Yank one of your versions: ranges and `latest` skip it; exact pins still get it."""

    @extend_schema(request=StatusChangeSerializer, responses={200: VersionSerializer})
    def post(self, request, publisher: str, slug: str, version: str):
        data = validated(StatusChangeSerializer(data=request.data))
        target = _own_version(request, publisher, slug, version)
        target = publishing.set_status(
            version=target, status=VersionStatus.YANKED, reason=data.get("reason", "")
        )
        return Response(VersionSerializer(target).data)


class VersionUnyankView(APIView):
    """Make a yanked version of yours installable by ranges again."""

    @extend_schema(request=None, responses={200: VersionSerializer})
    def post(self, request, publisher: str, slug: str, version: str):
        target = _own_version(request, publisher, slug, version)
        target = publishing.set_status(version=target, status=VersionStatus.ACTIVE)
        return Response(VersionSerializer(target).data)


# --- The catalogue --------------------------------------------------------------------


class CatalogueView(generics.ListAPIView):
    """Listed packages, newest first: `?search=` (name, summary, publisher) and
    `?publisher=`; each with its latest version, install count and metered calls in the
    last 30 days."""

    serializer_class = PackageSerializer

    @extend_schema(parameters=[CatalogueQuerySerializer])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        query = validated(CatalogueQuerySerializer(data=self.request.query_params))
        return selectors.catalogue(
            request_tenant(self.request),
            search=query.get("search", ""),
            publisher=query.get("publisher", ""),
        )

    def get_serializer(self, *args, **kwargs):
        if args:
            kwargs.setdefault("context", self.get_serializer_context())
            kwargs["context"]["latest"] = selectors.latest_versions(list(args[0]))
        return super().get_serializer(*args, **kwargs)


def _package_detail(package) -> dict:
    context = {
        "versions": selectors.versions_of(package),
        "latest": selectors.latest_versions([package]),
    }
    return PackageDetailSerializer(package, context=context).data


class CatalogueEntryView(APIView):
    """A package with every version (yanked and revoked ones marked)."""

    @extend_schema(responses={200: PackageDetailSerializer, 404: NOT_FOUND})
    def get(self, request, publisher: str, slug: str):
        package = selectors.get_package(request_tenant(request), publisher, slug)
        return Response(_package_detail(package))


class CatalogueVersionView(APIView):
    """One version: its manifest, permissions, price and changelog."""

    @extend_schema(responses={200: VersionSerializer, 404: NOT_FOUND})
    def get(self, request, publisher: str, slug: str, version: str):
        package = selectors.get_package(request_tenant(request), publisher, slug)
        return Response(VersionSerializer(selectors.get_version(package, version)).data)


# --- Installations --------------------------------------------------------------------


class InstallationListView(generics.ListAPIView):
    """Your installations, or install a package as a new agent (the permissions it grants
    are in the answer: showing them is asking for consent)."""

    serializer_class = InstallationSerializer

    def get_queryset(self):
        return selectors.installations_of(request_tenant(self.request))

    @extend_schema(
        request=InstallSerializer,
        responses={
            201: InstallationSerializer,
            400: INVALID,
            404: NOT_FOUND,
            409: OpenApiResponse(description="`agent_exists`"),
        },
    )
    def post(self, request):
        data = validated(InstallSerializer(data=request.data))
        tenant = request_tenant(request)
        publisher, slug = data["package"].split("/")
        installation = installing.install(
            tenant=tenant,
            package=selectors.get_package(tenant, publisher, slug),
            spec=data["version"],
            agent_slug=data.get("agent", ""),
            provider=data.get("provider", ""),
            model=data.get("model", ""),
            spend_cap_micros=data.get("spend_cap_micros"),
        )
        return Response(InstallationSerializer(installation).data, status=status.HTTP_201_CREATED)


class InstallationDetailView(APIView):
    """Read an installation, or uninstall it (its agent goes too)."""

    @extend_schema(responses={200: InstallationSerializer, 404: NOT_FOUND})
    def get(self, request, installation_id: int):
        installation = selectors.get_installation(request_tenant(request), installation_id)
        return Response(InstallationSerializer(installation).data)

    @extend_schema(responses={204: None, 404: NOT_FOUND})
    def delete(self, request, installation_id: int):
        installation = selectors.get_installation(request_tenant(request), installation_id)
        installing.uninstall(installation=installation)
        return Response(status=status.HTTP_204_NO_CONTENT)


class InstallationUpgradeView(APIView):
    """Move to the version `version` (a spec; default the installation's own) picks now.
    With `dry_run`, only the diff of prompt, tools, permissions and price."""

    @extend_schema(request=UpgradeSerializer, responses={200: InstallationSerializer})
    def post(self, request, installation_id: int):
        data = validated(UpgradeSerializer(data=request.data))
        installation = selectors.get_installation(request_tenant(request), installation_id)
        diff, installation = installing.upgrade(
            installation=installation, spec=data.get("version"), dry_run=data["dry_run"]
        )
        return Response(
            {"diff": diff.as_dict(), "installation": InstallationSerializer(installation).data}
        )


class InstallationRollbackView(APIView):
    """Back to the version before the last move (pinned there)."""

    @extend_schema(request=None, responses={200: InstallationSerializer})
    def post(self, request, installation_id: int):
        installation = selectors.get_installation(request_tenant(request), installation_id)
        installation = installing.rollback(installation=installation)
        return Response(InstallationSerializer(installation).data)


class InstallationConsentView(APIView):
    """Consent to the version waiting in `pending_consent` (its wider permissions or price)."""

    @extend_schema(request=None, responses={200: InstallationSerializer})
    def post(self, request, installation_id: int):
        installation = selectors.get_installation(request_tenant(request), installation_id)
        installation = installing.consent_to_pending(installation=installation)
        return Response(InstallationSerializer(installation).data)
