"""`manage.py create_channel_binding`: wire a Slack app or Discord application to an agent.

Secrets are read from the environment (SLACK_SIGNING_SECRET, SLACK_BOT_TOKEN,
DISCORD_BOT_TOKEN) or asked for without echo, so they never land in shell history.
"""

import getpass
import os
import sys

from django.core.management.base import BaseCommand, CommandError

from agents.channels import bindings
from agents.models import ChannelKind, ChannelSessionScope
from beamclaw.errors import DomainError
from tenants.models import Tenant

SECRETS = {
    ChannelKind.SLACK: [
        ("signing_secret", "SLACK_SIGNING_SECRET", "Slack signing secret"),
        ("bot_token", "SLACK_BOT_TOKEN", "Slack bot token (xoxb-...)"),
    ],
    ChannelKind.DISCORD: [("bot_token", "DISCORD_BOT_TOKEN", "Discord bot token")],
}
HOOK_PATHS = {
    ChannelKind.SLACK: "/hooks/slack/{id}/events",
    ChannelKind.DISCORD: "/hooks/discord/{id}/interactions",
}


class Command(BaseCommand):
    help = "Bind a Slack app or Discord application to an agent; prints the webhook path."

    def add_arguments(self, parser):
        parser.add_argument("kind", choices=ChannelKind.values)
        parser.add_argument("--tenant", required=True, help="tenant slug")
        parser.add_argument("--agent", required=True, help="agent slug")
        parser.add_argument("--name", default="")
        parser.add_argument(
            "--external-id", default="", help="Slack team id (T...) or Discord application id"
        )
        parser.add_argument("--public-key", default="", help="Discord application public key")
        parser.add_argument(
            "--session-scope",
            choices=ChannelSessionScope.values,
            default=ChannelSessionScope.CHANNEL_OR_THREAD,
        )

    def handle(self, *args, kind, tenant, agent, **options):
        owner = Tenant.objects.filter(slug=tenant).first()
        if owner is None:
            raise CommandError(f"No tenant '{tenant}'.")
        secrets = {
            field: os.environ.get(variable) or self._ask(label)
            for field, variable, label in SECRETS[kind]
        }
        try:
            binding = bindings.create_binding(
                tenant=owner,
                kind=kind,
                agent=agent,
                name=options["name"],
                external_id=options["external_id"],
                public_key=options["public_key"],
                session_scope=options["session_scope"],
                **secrets,
            )
        except DomainError as error:
            raise CommandError(error.message)
        self.stdout.write(f"binding {binding.pk}: {HOOK_PATHS[kind].format(id=binding.pk)}")

    def _ask(self, label: str) -> str:
        return getpass.getpass(f"{label}: ") if sys.stdin.isatty() else ""
