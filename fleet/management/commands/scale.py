"""`manage.py scale N [--shard k/N]` fixes the worker count `manage.py workers` runs;
`manage.py scale auto` hands it back to the capacity signal. Either way, the workers a
supervisor stopped running because they were drained by hand (`manage.py drain`) count
again. It says what each running supervisor will run, within its --min/--max."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from fleet.supervisor import Supervisor, set_fixed_target, supervisors_of, workers_for


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
        supervisors = supervisors_of(label)
        if not supervisors:
            self.stdout.write(
                f"{label}: {count} worker(s) asked; no `manage.py workers` runs for {label} "
                "now (each will run it within its --min/--max)"
            )
            return
        self.stdout.write(f"{label}: {count} worker(s) asked")
        for supervisor in supervisors:
            runs, why = workers_for(supervisor, int(count))
            self.stdout.write(
                f"  supervisor {supervisor['supervisor']}: runs {runs} worker(s)"
                + (f", {why}" if why else "")
            )
