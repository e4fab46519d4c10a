from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from tenants.services import LIMIT_FIELDS, create_tenant, issue_api_key


class Command(BaseCommand):
    help = "Create a tenant (and optionally its first API key)."

    def add_arguments(self, parser):
        parser.add_argument("slug", help="DNS label, e.g. 'acme'")
        parser.add_argument("--name", default="")
        parser.add_argument("--with-key", action="store_true", help="also issue an API key")
        for limit in LIMIT_FIELDS:
            parser.add_argument(f"--{limit.replace('_', '-')}", type=int, dest=limit)

    def handle(self, *args, slug, name, with_key, **options):
        limits = {k: options[k] for k in LIMIT_FIELDS if options.get(k) is not None}
        try:
            tenant = create_tenant(slug=slug, name=name, **limits)
        except ValidationError as exc:
            raise CommandError(
                "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())
            )
        self.stdout.write(self.style.SUCCESS(f"Created tenant {tenant.slug}"))
        if with_key:
            issued = issue_api_key(tenant=tenant, name="default")
            self.stdout.write(f"API key (shown once): {issued.secret}")
