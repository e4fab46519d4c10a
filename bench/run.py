"""One bench run: its own Redis database and PostgreSQL/SQLite database, the platform's
processes, the scenarios in order, the table and the JSON; everything cleaned up after."""

from __future__ import annotations

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

from beamclaw.celery import app as celery_app

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


def _point_platform_at(redis_url: str) -> None:
    """This process talks to the run's Redis, as broker and result backend too."""
    settings.REDIS_URL = redis_url
    # Celery reads these from the environment before its configuration.
    os.environ.update(CELERY_BROKER_URL=redis_url, CELERY_RESULT_BACKEND=redis_url)
    celery_app.conf.update(broker_url=redis_url, result_backend=redis_url)


def _raise_file_limit() -> None:
    # A thousand turns in flight hold thousands of sockets across our processes.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _stop_on_sigterm() -> None:
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def machine(database: BenchDatabase, redis_db: RedisDatabase) -> dict:
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
        "load_average_at_start": os.getloadavg(),
        "commit": commit,
    }


def run(scenarios: list[str], options: Options) -> int:
    _stop_on_sigterm()
    _raise_file_limit()
    redis_url = bench_redis_url(options.redis_url)
    results: list[Result] = []
    facts: dict = {}
    log_dir = Path(tempfile.mkdtemp(prefix="beamclaw-bench-logs-"))
    say = Bench.say
    try:
        with RedisDatabase(redis_url) as redis_db:
            _point_platform_at(redis_url)
            say(f"==> Redis {redis_url} (flushed); creating the bench database")
            database = BenchDatabase.create()
            try:
                platform = Platform(
                    database_url=database.url,
                    redis_url=redis_url,
                    secret_key=settings.SECRET_KEY,
                    log_dir=log_dir,
                    say=say,
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
                    took = database.migrate_seconds
                    say(f"    {database.vendor} {database.name} migrated in {took:.1f} s")
                    for name in database.leftovers():
                        say(f"    note: {name} is left from an earlier run; drop it if unused")
                    facts.update(machine(database, redis_db))
                    platform.wait_for_web()
                    for name in scenarios:
                        say(f"==> {name}")
                        results.append(_run_scenario(bench, name))
                finally:
                    platform.stop()
            finally:
                database.drop()
    finally:
        # Interrupted or not, what was measured is shown.
        if results:
            _report(results, facts, options)
        say(f"process logs: {log_dir}")
    return 1 if any(result.error for result in results) else 0


def _report(results: list[Result], facts: dict, options: Options) -> None:
    header = [
        f"BeamClaw bench — {facts['cores']} cores ({facts['cpu']}), {facts['memory_gib']} GiB, "
        f"Linux {facts['kernel']}, Python {facts['python']}",
        f"{facts['database']} ({facts['database_name']}), Redis {facts['redis']}, "
        f"commit {facts['commit']}, load average at start "
        + " ".join(f"{v:.2f}" for v in facts["load_average_at_start"]),
        "Every process runs on this one machine; `other` in CPU figures is what the rest "
        "of the machine used meanwhile.",
    ]
    print(table(results, header), flush=True)
    if options.json_path:
        write_json(options.json_path, facts, options.as_json(), results)
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
