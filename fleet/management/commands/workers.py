"""`manage.py workers --min 1 --max 4 --concurrency 8 [--standby 1] [--shard k/N]`: run as
many worker processes as the load needs on this machine (see fleet/supervisor.py)."""

from __future__ import annotations

import signal

from django.core.management.base import BaseCommand, CommandError

from fleet.shards import parse_shard
from fleet.supervisor import Supervisor


class Command(BaseCommand):
    help = "Run and autoscale Celery worker processes on this machine, with warm standbys."

    def add_arguments(self, parser):
        parser.add_argument("--min", type=int, default=1, dest="minimum")
        parser.add_argument("--max", type=int, default=4, dest="maximum")
        parser.add_argument("--concurrency", type=int, default=8, help="threads per worker")
        parser.add_argument("--shard", help="k/N: the workers consume hash shard k")
        parser.add_argument(
            "--standby",
            type=int,
            default=1,
            help="warm standby workers to keep started but consuming nothing, turned on "
            "first when the load grows (no process start to wait for); not counted as "
            "workers, fewer near --max; 0: none",
        )
        parser.add_argument(
            "--interval",
            type=float,
            default=2.0,
            help="seconds between looks at the load (a capacity report older than this is "
            "computed anew)",
        )

    def handle(self, *args, minimum, maximum, concurrency, shard, interval, standby, **options):
        if not 1 <= minimum <= maximum:
            raise CommandError("need 1 <= --min <= --max")
        if standby < 0:
            raise CommandError("--standby must be 0 or more")
        if concurrency < 1:
            raise CommandError("--concurrency must be at least 1")
        if shard:
            try:
                parse_shard(shard)
            except ValueError as exc:
                raise CommandError(str(exc))
        supervisor = Supervisor(
            minimum=minimum,
            maximum=maximum,
            concurrency=concurrency,
            shard=shard,
            interval=interval,
            standby=standby,
        )
        signal.signal(signal.SIGTERM, supervisor.stop)
        signal.signal(signal.SIGINT, supervisor.stop)
        self.stdout.write(
            f"workers: {minimum}..{maximum} x {concurrency} threads, {standby} standby, "
            f"following the capacity signal of {supervisor.label}"
        )
        self.stdout.flush()
        supervisor.run()
