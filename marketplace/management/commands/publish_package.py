from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from beamclaw.errors import DomainError
from marketplace.models import Publisher
from marketplace.packing import read_package
from marketplace.publishing import publish_version


class Command(BaseCommand):
    help = (
        "Publish the package in a folder (manifest.json and its tools' Python code) as a "
        "new version, under the publisher handle of the tenant that owns it."
    )

    def add_arguments(self, parser):
        parser.add_argument("folder", type=Path)
        parser.add_argument("--publisher", required=True, help="the publisher's handle")
        parser.add_argument("--visibility", choices=["public", "unlisted"])

    def handle(self, *args, folder: Path, publisher: str, visibility, **options):
        if not (folder / "manifest.json").is_file():
            raise CommandError(f"{folder} has no manifest.json.")
        owner = Publisher.objects.select_related("tenant").filter(handle=publisher).first()
        if owner is None:
            raise CommandError(f"No publisher '{publisher}'.")
        try:
            manifest, artifact = read_package(folder)
            version = publish_version(
                tenant=owner.tenant,
                publisher_handle=publisher,
                slug=manifest.get("name", "") if isinstance(manifest, dict) else "",
                manifest_data=manifest,
                artifact=artifact,
                visibility=visibility,
            )
        except DomainError as error:
            raise CommandError(f"{error.code}: {error.message}")
        except ValueError as error:
            raise CommandError(f"manifest.json is not JSON: {error}")
        self.stdout.write(f"published {version} (manifest sha256 {version.manifest_sha256})")
