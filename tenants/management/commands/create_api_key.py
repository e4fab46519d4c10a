from django.core.management.base import BaseCommand, CommandError

from tenants.models import Tenant
from tenants.services import issue_api_key


class Command(BaseCommand):
    help = "Issue an API key for a tenant and print it (it is shown only once)."

    def add_arguments(self, parser):
        parser.add_argument("tenant", help="tenant slug")
        parser.add_argument("--name", default="")

    def handle(self, *args, tenant, name, **options):
        try:
            owner = Tenant.objects.get(slug=tenant)
        except Tenant.DoesNotExist:
            raise CommandError(f"No tenant '{tenant}'.")
        issued = issue_api_key(tenant=owner, name=name)
        self.stdout.write(issued.secret)
