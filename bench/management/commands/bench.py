"""`manage.py bench <scenario>`: measure the platform, each figure against its floor.

It starts everything it needs (fake model server, uvicorn, Celery workers, beat) on a
database and a Redis database of its own, which it removes at the end; see bench/.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from bench.options import SCENARIO_NAMES


class Command(BaseCommand):
    help = (
        "Benchmark BeamClaw: overhead, concurrency, tenants, fairness, sessions, recovery "
        "(or all). Starts its own platform on a separate database and Redis database."
    )
    # Checks would open the developer's database before bench switches to its own.
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("scenario", choices=[*SCENARIO_NAMES, "all"])
        parser.add_argument(
            "--quick", action="store_true", help="every scenario at a tiny size (< 1 minute)"
        )
        parser.add_argument("--json", dest="json_path", metavar="PATH", help="write figures here")
        parser.add_argument(
            "--redis-url", help="Redis database of the run, flushed (default: REDIS_URL's, db 14)"
        )
        parser.add_argument(
            "--broker",
            dest="broker_url",
            metavar="URL",
            help="Celery broker of the run, e.g. amqp://guest:guest@127.0.0.1:5672// "
            "(default: the run's Redis database); the queues the run used are deleted at the end",
        )
        sizes = parser.add_argument_group("sizes (each scenario has its own default)")
        sizes.add_argument(
            "--turns",
            type=int,
            help="turns per load: overhead/tenants/sessions 2000, fairness flood 5000, "
            "recovery 500",
        )
        sizes.add_argument(
            "--load-sessions",
            type=int,
            help="sessions a load is spread over (overhead, sessions: 200; fairness' noisy: 500)",
        )
        sizes.add_argument("--sessions", type=int, help="idle sessions of `sessions` (1,000,000)")
        sizes.add_argument("--tenants", type=int, help="tenants of `tenants` (1000)")
        sizes.add_argument(
            "--concurrency", type=int, help="sessions sending at once in `concurrency` (1000)"
        )
        sizes.add_argument(
            "--latency",
            type=float,
            help="model latency in seconds: concurrency 2, fairness 0.5, recovery 1 "
            "(overhead, tenants and sessions use 0)",
        )
        sizes.add_argument("--in-flight", type=int, help="requests in flight (100)")
        sizes.add_argument("--workers", type=int, help="Celery worker processes")
        sizes.add_argument("--worker-concurrency", type=int, help="threads per worker (-c)")
        sizes.add_argument("--web-workers", type=int, default=2, help="uvicorn workers (2)")
        sizes.add_argument(
            "--repeat",
            type=int,
            help="runs of each loaded throughput figure, reported as median and range "
            "(3; --quick 1)",
        )
        production = parser.add_argument_group(
            "production defaults (docker-compose.yml's), off to measure what each costs"
        )
        production.add_argument(
            "--no-task-events",
            dest="task_events",
            action="store_false",
            help="Celery task events off (compose has them on, for Flower)",
        )
        production.add_argument(
            "--no-access-log",
            dest="access_log",
            action="store_false",
            help="uvicorn's access log off (compose has it on)",
        )

    def handle(self, *args, scenario: str, **options):
        try:
            # Here, not at module level: the bench needs aiohttp and tqdm, which only
            # requirements/dev.txt installs, and the command must say so, not crash.
            from bench.options import Options
            from bench.run import BenchError, run
        except ImportError as exc:  # aiohttp and tqdm come with requirements/dev.txt
            raise CommandError(f"{exc}; install requirements/dev.txt (make venv)")

        fields = set(Options.__dataclass_fields__)
        chosen = Options(**{k: v for k, v in options.items() if k in fields})
        scenarios = list(SCENARIO_NAMES) if scenario == "all" else [scenario]
        try:
            code = run(scenarios, chosen)
        except BenchError as exc:
            raise CommandError(str(exc))
        if code:
            raise CommandError("a scenario could not finish; see above")
