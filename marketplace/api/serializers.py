from rest_framework import serializers

from marketplace.models import (
    Installation,
    Package,
    PackageVersion,
    Publisher,
    Visibility,
)
from tenants.models import slug_validator


class PublisherSerializer(serializers.ModelSerializer):
    handle = serializers.RegexField(
        slug_validator.regex, max_length=63, help_text="lowercase letters, digits, hyphens"
    )

    class Meta:
        model = Publisher
        fields = ["handle", "display_name", "revenue_share_bp", "created_at"]
        read_only_fields = ["revenue_share_bp", "created_at"]
        validators = []  # a taken handle is a 409 from the service


class VersionSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = PackageVersion
        fields = ["version", "status", "status_reason", "published_at"]


class VersionSerializer(serializers.ModelSerializer):
    package = serializers.CharField(source="package.__str__")
    permissions = serializers.SerializerMethodField()
    pricing = serializers.SerializerMethodField()
    changelog = serializers.SerializerMethodField()

    class Meta:
        model = PackageVersion
        fields = [
            "package",
            "version",
            "status",
            "status_reason",
            "published_at",
            "manifest_sha256",
            "artifact_sha256",
            "permissions",
            "pricing",
            "changelog",
            "manifest",
        ]

    def get_permissions(self, version) -> dict:
        return version.manifest.get("permissions", {})

    def get_pricing(self, version) -> dict:
        return version.manifest.get("pricing", {})

    def get_changelog(self, version) -> str:
        return version.manifest.get("changelog", "")


class PackageSerializer(serializers.ModelSerializer):
    name = serializers.CharField(source="__str__")
    publisher = serializers.CharField(source="publisher.handle")
    latest_version = serializers.SerializerMethodField()
    install_count = serializers.IntegerField(read_only=True, default=None)
    calls_30d = serializers.IntegerField(read_only=True, default=None)

    class Meta:
        model = Package
        fields = [
            "name",
            "publisher",
            "slug",
            "summary",
            "visibility",
            "deprecation_message",
            "latest_version",
            "install_count",
            "calls_30d",
            "created_at",
        ]

    def get_latest_version(self, package) -> str | None:
        return self.context.get("latest", {}).get(package.pk)


class PackageDetailSerializer(PackageSerializer):
    versions = serializers.SerializerMethodField()

    class Meta(PackageSerializer.Meta):
        fields = [*PackageSerializer.Meta.fields, "versions"]

    def get_versions(self, package) -> list[dict]:
        return VersionSummarySerializer(self.context.get("versions", []), many=True).data


class PackageUpdateSerializer(serializers.Serializer):
    visibility = serializers.ChoiceField(choices=Visibility.choices, required=False)
    deprecation_message = serializers.CharField(max_length=2000, allow_blank=True, required=False)


class PublishOptionsSerializer(serializers.Serializer):
    artifact = serializers.FileField(required=False)
    visibility = serializers.ChoiceField(choices=Visibility.choices, required=False)


class PublishSerializer(PublishOptionsSerializer):
    """A JSON body: `{"manifest": {...}}`; or multipart with `manifest` (a JSON file or
    field) and `artifact` (the .tar.gz of the Python tools)."""

    manifest = serializers.JSONField(help_text="the manifest (JSON Schema: manifest.schema.json)")


class StatusChangeSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=2000, allow_blank=True, required=False)


class CatalogueQuerySerializer(serializers.Serializer):
    search = serializers.CharField(max_length=200, required=False, allow_blank=True)
    publisher = serializers.CharField(max_length=63, required=False, allow_blank=True)


class InstallSerializer(serializers.Serializer):
    package = serializers.RegexField(
        r"^[a-z0-9-]{1,63}/[a-z0-9-]{1,63}$", help_text="`<publisher>/<slug>`"
    )
    version = serializers.CharField(max_length=150, default="latest")
    agent = serializers.RegexField(
        slug_validator.regex, max_length=63, required=False, help_text="the new agent's slug"
    )
    provider = serializers.CharField(max_length=32, required=False, allow_blank=True)
    model = serializers.CharField(max_length=200, required=False, allow_blank=True)
    spend_cap_micros = serializers.IntegerField(
        min_value=0, max_value=2**63 - 1, required=False, allow_null=True
    )


class UpgradeSerializer(serializers.Serializer):
    version = serializers.CharField(max_length=150, required=False)
    dry_run = serializers.BooleanField(default=False)


class InstallationSerializer(serializers.ModelSerializer):
    agent = serializers.CharField(source="agent.slug")
    package = serializers.CharField(source="package.__str__")
    version = serializers.CharField(source="version.version")
    pending_version = serializers.CharField(source="pending_version.version", default=None)
    previous_version = serializers.CharField(source="previous_version.version", default=None)

    class Meta:
        model = Installation
        fields = [
            "id",
            "agent",
            "package",
            "spec",
            "version",
            "state",
            "pending_version",
            "previous_version",
            "granted_permissions",
            "spend_cap_micros",
            "created_at",
            "updated_at",
        ]
