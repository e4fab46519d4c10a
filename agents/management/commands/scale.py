"""`manage.py scale N [--shard k/N]` fixes the worker count `manage.py workers` runs;
`manage.py scale auto` hands it back to the capacity signal."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from beamclaw.supervisor import Supervisor, set_fixed_target


class Command(BaseCommand):
    help = "Set a fixed worker count for `manage.py workers` (or `auto`)."

    def add_arguments(self, parser):
        parser.add_argument("count", help="a number of workers, or auto")
        parser.add_argument("--shard", help="k/N: the supervisors of this shard")

    def handle(self, *args, count, shard=None, **options):
        label = Supervisor(minimum=1, maximum=1, concurrency=1, shard=shard).label
        if count == "auto":
            set_fixed_target(label, None)
            self.stdout.write(f"{label}: following the capacity signal")
            return
        if not count.isdigit() or int(count) < 1:
            raise CommandError("count must be a whole number of at least 1, or auto")
        set_fixed_target(label, int(count))
        self.stdout.write(f"{label}: {count} worker(s), within each supervisor's --min/--max")
