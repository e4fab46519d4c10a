"""`manage.py chat <session-key> "message"`: talk to an agent from the terminal.

Submits through the same service as the API, then follows the turn's event stream,
printing the reply as it streams and every tool call. A worker must be running.
"""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError

from agents.models import Turn
from agents.runtime.events import TERMINAL_EVENT, decode, turn_stream
from agents.selectors import reply_of
from agents.services import submit_message
from beamclaw.errors import DomainError
from beamclaw.redis import get_redis
from tenants.models import Tenant


class Command(BaseCommand):
    help = "Send a message to an agent's session and print the reply as it streams."

    def add_arguments(self, parser):
        parser.add_argument("session_key", help="e.g. agent:assistant:main")
        parser.add_argument("message")
        parser.add_argument("--tenant", default="demo", help="tenant slug (default: demo)")
        parser.add_argument("--mode", choices=["enqueue", "collect", "interrupt", "reject"])
        parser.add_argument("--timeout", type=float, default=300.0)

    def handle(self, *args, session_key, message, tenant, mode, timeout, **options):
        owner = Tenant.objects.filter(slug=tenant).first()
        if owner is None:
            raise CommandError(f"No tenant '{tenant}' (use --tenant).")
        try:
            submission = submit_message(
                tenant=owner, session_key=session_key, content=message, mode=mode, source="cli"
            )
        except DomainError as exc:
            raise CommandError(f"{exc.code}: {exc.message}")
        turn = submission.turn
        self.stderr.write(self.style.HTTP_INFO(f"turn {turn.pk} queued"))
        if not self._follow(turn, timeout):
            raise CommandError(
                f"No answer within {timeout:.0f} s; is a worker running? (make run starts one)"
            )
        turn.refresh_from_db()
        if turn.status != "succeeded":
            raise CommandError(f"turn {turn.status}: {turn.error_code} {turn.error_message}")

    def _follow(self, turn: Turn, timeout: float) -> bool:
        redis = get_redis()
        stream, last_id = turn_stream(turn), "0-0"
        deadline = time.monotonic() + timeout
        streamed = False
        while time.monotonic() < deadline:
            reply = redis.xread({stream: last_id}, block=1000)
            for entry_id, fields in reply[0][1] if reply else []:
                last_id = entry_id
                event = decode(fields)
                kind, data = event["type"], event["data"]
                if kind == "message.delta":
                    self.stdout.write(data["text"], ending="")
                    self.stdout.flush()
                    streamed = True
                elif kind == "tool.started":
                    self.stderr.write(
                        self.style.WARNING(f"\n→ {data['name']}({data['arguments']})")
                    )
                elif kind == "tool.finished":
                    self.stderr.write(self.style.WARNING(f"← {data['content']}"))
                elif kind == "turn.failed":
                    self.stderr.write(self.style.ERROR(f"\n{data['code']}: {data['message']}"))
                elif kind == TERMINAL_EVENT:
                    if not streamed and (final := reply_of(turn)) is not None:
                        self.stdout.write(final.content, ending="")
                    self.stdout.write("")
                    return True
        return False
