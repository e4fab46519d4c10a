"""`manage.py clear_redis_keys`: delete this installation's keys from its Redis.

`make clean` runs it before deleting var/, so a shared Redis keeps nothing of an
installation that is gone. Other installations' keys (another prefix) stay.
"""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from beamclaw.redis import get_redis, key_prefix


class Command(BaseCommand):
    help = "Delete every Redis key of this installation (bc:<installation id>:*)."

    def handle(self, *args, **options) -> None:
        client = get_redis()
        prefix = key_prefix()
        deleted = 0
        batch: list[str] = []
        for name in client.scan_iter(match=f"{prefix}*", count=1000):
            batch.append(name)
            if len(batch) >= 1000:
                deleted += client.unlink(*batch)
                batch.clear()
        if batch:
            deleted += client.unlink(*batch)
        self.stdout.write(f"Deleted {deleted} key(s) {prefix}* from {_safe(settings.REDIS_URL)}")


def _safe(url: str) -> str:
    """The URL without its password."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url
