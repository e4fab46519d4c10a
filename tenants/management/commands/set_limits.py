from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from tenants.models import Tenant
from tenants.services import LIMIT_FIELDS, set_limits


class Command(BaseCommand):
    help = "Change a tenant's limits (they apply to the next model call; no restart needed)."

    def add_arguments(self, parser):
        parser.add_argument("tenant", help="tenant slug")
        for field in LIMIT_FIELDS:
            parser.add_argument(f"--{field.replace('_', '-')}", type=int, dest=field)
        parser.add_argument("--suspend", action="store_true")
        parser.add_argument("--resume", action="store_true")

    def handle(self, *args, tenant, suspend, resume, **options):
        try:
            owner = Tenant.objects.get(slug=tenant)
        except Tenant.DoesNotExist:
            raise CommandError(f"No tenant '{tenant}'.")
        changes = {f: options[f] for f in LIMIT_FIELDS if options.get(f) is not None}
        if suspend or resume:
            changes["is_active"] = resume
        try:
            owner = set_limits(tenant=owner, **changes)
        except ValidationError as exc:
            raise CommandError(
                "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())
            )
        for field in ("is_active", *LIMIT_FIELDS):
            self.stdout.write(f"{field:26} {getattr(owner, field)}")
