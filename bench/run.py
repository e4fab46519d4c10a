"""One bench run: its own Redis database and PostgreSQL/SQLite database, the platform's
processes, the scenarios in order, the table and the JSON; everything cleaned up after."""

from __future__ import annotations

import contextlib
import os
import platform as host
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import redis
from django.conf import settings
from django.db import connection
from kombu import Connection
from kombu.exceptions import OperationalError

from beamclaw import crypto
from beamclaw.celery import app as celery_app
from beamclaw.celery import broker_settings, is_amqp, tenant_queue
from tenants.models import Tenant

from . import floor
from .context import Bench
from .database import BenchDatabase
from .options import Options
from .platform import ROOT, Platform
from .report import Result, table, write_json
from .scenarios import SCENARIOS

BENCH_REDIS_DB = 14
LOCK_KEY = "beamclaw-bench:running"


class BenchError(Exception):
    """Something the person running the bench can fix; printed without a traceback."""


def bench_redis_url(given: str | None) -> str:
    """--redis-url, else REDIS_URL's server with database 14."""
    if given:
        return given
    parts = urlsplit(settings.REDIS_URL)
    return urlunsplit(parts._replace(path=f"/{BENCH_REDIS_DB}"))


def _same_redis_db(a: str, b: str) -> bool:
    def where(url: str) -> tuple:
        parts = urlsplit(url)
        return parts.hostname, parts.port or 6379, parts.path.strip("/") or "0"

    return where(a) == where(b)


class RedisDatabase:
    """The run's Redis database: flushed at start and end, held with a lock key so two
    runs never flush each other's."""

    def __init__(self, url: str):
        if _same_redis_db(url, settings.REDIS_URL):
            raise BenchError(
                f"{url} is REDIS_URL's database, which the bench would flush; "
                "pass --redis-url with a database of its own."
            )
        self.url = url
        self.client = redis.Redis.from_url(url, socket_connect_timeout=3)
        self.owner = f"{host.node()}:{os.getpid()}"
        self._stop = threading.Event()
        self._keeper: threading.Thread | None = None

    def __enter__(self) -> RedisDatabase:
        try:
            self.client.ping()
        except redis.RedisError as exc:
            raise BenchError(f"Redis at {self.url} does not answer: {exc}")
        if not self.client.set(LOCK_KEY, self.owner, nx=True, ex=30):
            raise BenchError(
                f"another bench run ({self.client.get(LOCK_KEY)!r}) is using {self.url}; "
                "wait for it or pass --redis-url with another database."
            )
        self.client.flushdb()
        self.client.set(LOCK_KEY, self.owner, ex=30)
        self._keeper = threading.Thread(target=self._keep_lock, daemon=True)
        self._keeper.start()
        return self

    def _keep_lock(self) -> None:
        while not self._stop.wait(10):
            self.client.set(LOCK_KEY, self.owner, ex=30)

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self.client.flushdb()  # the lock goes with it

    def server_pid(self) -> int | None:
        """Redis's pid, if it runs on this machine (for its CPU time)."""
        pid = self.client.info("server").get("process_id")
        try:
            comm = Path(f"/proc/{pid}/comm").read_text()
        except OSError:
            return None
        return pid if "redis" in comm else None

    def version(self) -> str:
        return self.client.info("server").get("redis_version", "?")


class RabbitBroker:
    """A RabbitMQ broker given with --broker. Its vhost may serve others too, so the run
    deletes the queues (and their exchanges) it used when it ends, instead of flushing."""

    def __init__(self, url: str):
        self.url = url
        self.safe_url = Connection(url).as_uri()  # password masked
        self.version = "?"

    def __enter__(self) -> RabbitBroker:
        try:
            with Connection(self.url, connect_timeout=3) as conn:
                conn.ensure_connection(max_retries=1, interval_start=0)
                self.version = conn.connection.server_properties.get("version", "?")
        except OperationalError as exc:
            raise BenchError(f"the broker at {self.safe_url} does not answer: {exc}")
        return self

    def __exit__(self, *exc_info: object) -> None:
        pass

    def delete_queues(self, tenant_slugs: list[str]) -> int:
        """Delete the tenants' queues, and the default queue if it is idle and empty (a
        live install on the same vhost may use it). Returns how many were deleted."""
        deleted = 0
        with Connection(self.url, connect_timeout=3) as conn:
            channel = conn.channel()
            for name in [tenant_queue(slug) for slug in tenant_slugs]:
                channel.queue_delete(name)
                channel.exchange_delete(name)
                deleted += 1
            default = celery_app.conf.task_default_queue
            try:
                channel.queue_delete(default, if_unused=True, if_empty=True)
                deleted += 1
            except conn.channel_errors:  # in use or not empty: someone else's, left alone
                channel = conn.channel()
            # Celery's own exchanges (default, control, replies, events), unless bound.
            control = celery_app.conf.control_exchange
            events = celery_app.conf.event_exchange
            shared = [default, f"{control}.pidbox", f"reply.{control}.pidbox", events]
            for name in shared:
                try:
                    channel.exchange_delete(name, if_unused=True)
                except conn.channel_errors:
                    channel = conn.channel()
        return deleted


def bench_broker(given: str | None) -> RabbitBroker | None:
    """--broker: a RabbitMQ URL, else None (the run's Redis database is the broker)."""
    if not given:
        return None
    if not is_amqp(given):
        raise BenchError(
            f"--broker takes an amqp:// URL, not {given!r}; a Redis broker is the run's own "
            "Redis database (--redis-url)."
        )
    return RabbitBroker(given)


def _point_platform_at(redis_url: str, broker_url: str) -> None:
    """This process talks to the run's Redis (also the result backend) and broker."""
    settings.REDIS_URL = redis_url
    settings.PROVIDER_BASE_URL_ALLOW_PRIVATE = True  # the tenants' model is on loopback
    # Celery reads these from the environment before its configuration.
    os.environ.update(CELERY_BROKER_URL=broker_url, CELERY_RESULT_BACKEND=redis_url)
    celery_app.conf.update(
        broker_url=broker_url, result_backend=redis_url, **broker_settings(broker_url)
    )


def _raise_file_limit() -> None:
    # A thousand turns in flight hold thousands of sockets across our processes.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _stop_on_sigterm() -> None:
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def machine(database: BenchDatabase, redis_db: RedisDatabase, broker: RabbitBroker | None) -> dict:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "?",
    )
    memory_kb = int(Path("/proc/meminfo").read_text().split()[1])
    commit = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    with connection.cursor() as cursor:
        cursor.execute("SELECT version()" if database.vendor == "postgresql" else "SELECT 1")
        db_version = cursor.fetchone()[0] if database.vendor == "postgresql" else "SQLite"
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(memory_kb / 1024 / 1024, 1),
        "kernel": host.release(),
        "python": host.python_version(),
        "database": str(db_version).split(" on ")[0],
        "database_name": database.name,
        "redis": f"{redis_db.version()} at {redis_db.url}",
        "broker": f"RabbitMQ {broker.version} at {broker.safe_url}" if broker else "Redis",
        "load_average_at_start": os.getloadavg(),
        "commit": commit,
    }


def run(scenarios: list[str], options: Options) -> int:
    _stop_on_sigterm()
    _raise_file_limit()
    redis_url = bench_redis_url(options.redis_url)
    broker = bench_broker(options.broker_url)
    broker_url = broker.url if broker else redis_url
    results: list[Result] = []
    facts: dict = {}
    log_dir = Path(tempfile.mkdtemp(prefix="beamclaw-bench-logs-"))
    say = Bench.say
    try:
        with RedisDatabase(redis_url) as redis_db, broker or contextlib.nullcontext():
            _point_platform_at(redis_url, broker_url)
            say(f"==> Redis {redis_url} (flushed); creating the bench database")
            if broker:
                say(f"==> broker: RabbitMQ {broker.version} at {broker.safe_url}")
            database = BenchDatabase.create()
            bench: Bench | None = None
            try:
                platform = Platform(
                    database_url=database.url,
                    redis_url=redis_url,
                    broker_url=broker_url,
                    secret_key=settings.SECRET_KEY,
                    fernet_keys=crypto.active_keys(),
                    log_dir=log_dir,
                    say=say,
                    task_events=options.task_events,
                    access_log=options.access_log,
                )
                bench = Bench(
                    options=options,
                    platform=platform,
                    database=database,
                    redis_url=redis_url,
                    redis_pid=redis_db.server_pid(),
                )
                try:
                    say(f"==> web server: uvicorn x {options.web_workers}; logs in {log_dir}")
                    platform.start_web(options.web_workers)  # it boots while we migrate
                    database.migrate()
                    floor.create_table()
                    took = database.migrate_seconds
                    say(f"    {database.vendor} {database.name} migrated in {took:.1f} s")
                    for name in database.leftovers():
                        say(f"    note: {name} is left from an earlier run; drop it if unused")
                    facts.update(machine(database, redis_db, broker))
                    platform.wait_for_web()
                    for name in scenarios:
                        say(f"==> {name}")
                        results.append(_run_scenario(bench, name))
                finally:
                    platform.stop()
            finally:
                if broker:
                    # Retired tenants are deleted: their slugs are remembered.
                    slugs = {*Tenant.objects.values_list("slug", flat=True)}
                    slugs.update(bench.slugs if bench else ())
                    deleted = broker.delete_queues(sorted(slugs))
                    say(f"    deleted {deleted} queue(s) of this run from RabbitMQ")
                database.drop()
    finally:
        # Interrupted or not, what was measured is shown.
        if results:
            _report(results, facts, options)
        say(f"process logs: {log_dir}")
    return 1 if any(result.error for result in results) else 0


def _report(results: list[Result], facts: dict, options: Options) -> None:
    production = [
        "task events " + ("on" if options.task_events else "OFF (--no-task-events)"),
        "uvicorn access log " + ("on" if options.access_log else "OFF (--no-access-log)"),
    ]
    header = [
        f"BeamClaw bench — {facts['cores']} cores ({facts['cpu']}), {facts['memory_gib']} GiB, "
        f"Linux {facts['kernel']}, Python {facts['python']}",
        f"{facts['database']} ({facts['database_name']}), Redis {facts['redis']}, "
        f"broker {facts['broker']}, "
        f"commit {facts['commit']}, load average at start "
        + " ".join(f"{v:.2f}" for v in facts["load_average_at_start"]),
        "Configured as docker-compose.yml: DEBUG off, INFO logs in JSON, "
        + ", ".join(production)
        + ". Every process runs on this one machine; `other` in CPU figures is what the "
        "rest of the machine used meanwhile (other databases' PostgreSQL backends too).",
    ]
    print(table(results, header), flush=True)
    if options.json_path:
        shown = options.as_json()
        if options.broker_url:
            shown["broker_url"] = Connection(options.broker_url).as_uri()  # password masked
        write_json(options.json_path, facts, shown, results)
        Bench.say(f"figures written to {options.json_path}")


def _run_scenario(bench: Bench, name: str) -> Result:
    started = time.monotonic()
    try:
        result = SCENARIOS[name](bench)
    except Exception as exc:  # one scenario failing must not lose the others' figures
        traceback.print_exc(file=sys.stderr)
        bench.platform.stop_beat()
        bench.platform.stop_workers()
        result = Result(name, "did not finish", error=f"{exc.__class__.__name__}: {exc}")
    result.config["seconds"] = round(time.monotonic() - started, 1)
    errors = bench.platform.errors()
    if errors:
        result.figures["logged_errors"] = sum(errors.values())
        for message, count in list(errors.items())[:5]:
            result.notes.append(f"logged {count}x: {message}")
    return result
