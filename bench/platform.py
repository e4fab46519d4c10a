"""The platform a run measures, as real processes: the fake model server, the ASGI web
server, Celery workers and celery-beat, all on the run's own database and Redis (and
broker, if --broker names RabbitMQ).

Every process runs as docker-compose.yml runs it: DEBUG off, INFO logs in JSON, task events
on for Flower (`-E` on workers, sent events from the web), uvicorn with its access log;
workers with the threads pool and prefetch 1 of beamclaw/celery.py. `--no-task-events` and
`--no-access-log` measure what those defaults cost. The settings are bench/settings.py:
the platform's, plus the pipeline floor's URL and task. Each process logs to a file in the
run's log directory.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from beamclaw.celery import app as celery_app
from beamclaw.celery import is_amqp
from fleet.worker_command import worker_command

from .measure import pids_named, process_tree

ROOT = Path(__file__).resolve().parent.parent
NODE = socket.gethostname()
NUMBERS = re.compile(r"\[[0-9a-f-]{36}\]|\d+")  # ids, keys, times: one line per kind
# The last line of a traceback: `django.db.utils.OperationalError: couldn't get ...`.
EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Timeout)\b")


class StartFailed(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(condition: Callable[[], object], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise StartFailed(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def error_message(line: str) -> str | None:
    """The message of an ERROR or CRITICAL log line, JSON (LOG_FORMAT=json) or text
    (Celery's and uvicorn's own lines, tracebacks), else None."""
    if line.startswith("{"):
        try:
            record = json.loads(line)
        except ValueError:
            return None
        if record.get("level") not in ("ERROR", "CRITICAL"):
            return None
        trace = (record.get("exc_info") or "").strip().splitlines()
        return f"{record.get('logger')}: {record.get('message')}" + (
            f" ({trace[-1]})" if trace else ""
        )
    for level in (" ERROR ", " CRITICAL "):
        if level in line:
            return line.split(level, 1)[1]
    return line if EXCEPTION_LINE.match(line) else None


class Child:
    """One process of the platform, in its own process group, logging to a file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._read_up_to = self.log_path.stat().st_size
        self.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def new_errors(self) -> list[str]:
        """ERROR and CRITICAL messages logged since the last call (for the report's notes)."""
        with open(self.log_path, "rb") as log:
            log.seek(self._read_up_to)
            text = log.read().decode(errors="replace")
            self._read_up_to = log.tell()
        return [message for line in text.splitlines() if (message := error_message(line))]

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def check_alive(self) -> None:
        if not self.alive():
            raise StartFailed(
                f"{self.name} exited with {self.proc.returncode}; the end of "
                f"{self.log_path}:\n{self.log_tail()}"
            )

    def kill(self) -> None:
        """SIGKILL the whole group: no shutdown handler runs, as when a machine dies."""
        if self.alive():
            os.killpg(self.pid, signal.SIGKILL)
            self.proc.wait()

    def terminate(self) -> None:
        """SIGTERM: a worker hands its turns back and exits (warm shutdown)."""
        if self.alive():
            os.killpg(self.pid, signal.SIGTERM)

    def stop(self, timeout: float = 30.0) -> None:
        if self.alive():
            self.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


class Platform:
    """Starts and stops the platform's processes; knows their pids for measuring."""

    def __init__(
        self,
        *,
        database_url: str,
        redis_url: str,
        broker_url: str,
        secret_key: str,
        fernet_keys: list[str],
        log_dir: Path,
        say: Callable[[str], None],
        task_events: bool = True,
        access_log: bool = True,
    ):
        self.log_dir = log_dir
        self.say = say
        self.task_events = task_events
        self.access_log = access_log
        self.rabbitmq = is_amqp(broker_url)
        metrics_dir = log_dir / "prometheus"
        metrics_dir.mkdir(exist_ok=True)
        self.env = dict(
            os.environ,
            DATABASE_URL=database_url,
            REDIS_URL=redis_url,
            CELERY_BROKER_URL=broker_url,
            CELERY_RESULT_BACKEND=redis_url,
            DJANGO_SETTINGS_MODULE="bench.settings",
            # As docker-compose.yml: events for Flower, sent by the web and the workers.
            CELERY_TASK_EVENTS="1" if task_events else "0",
            DEBUG="0",  # DEBUG keeps every query in memory
            # Same keys: credentials are encrypted with them. With DEBUG off both must be set.
            SECRET_KEY=secret_key,
            FERNET_KEYS=",".join(fernet_keys),
            LOG_LEVEL="INFO",
            LOG_FORMAT="json",
            # The per-API-key HTTP throttle is a tenant limit too: not what we measure.
            API_RATE_LIMIT="100000000/min",
            PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
            PYTHONUNBUFFERED="1",
            PROVIDER_BASE_URL_ALLOW_PRIVATE="1",  # the tenants' model is on loopback
        )
        self.model: Child | None = None
        self.model_latency: float | None = None
        self.model_port = free_port()
        self.web: Child | None = None
        self.web_url = ""
        self.web_workers = 0
        self.workers: list[Child] = []
        self.beat: Child | None = None
        self._generation = 0
        self._stopped: list[Child] = []  # whose errors are not collected yet
        self._exiting: list[Child] = []  # terminated, not yet waited for

    # -- the fake model server ---------------------------------------------------------

    @property
    def model_url(self) -> str:
        """OpenAI-compatible base URL; the same port across restarts with other latencies."""
        return f"http://127.0.0.1:{self.model_port}/v1"

    def start_model(self, latency: float) -> None:
        if self.model is not None and self.model.alive() and self.model_latency == latency:
            return
        self.stop_model()
        argv = python(
            *f"-m testing.fake_model --port {self.model_port} --latency {latency}".split()
        )
        self.model = Child("model", argv, self.env, self.log_dir)
        self.model_latency = latency

        def up() -> bool:
            self.model.check_alive()
            return http_ok(f"http://127.0.0.1:{self.model_port}/health")

        wait_until(up, timeout=30, what="the fake model server")

    def stop_model(self) -> None:
        if self.model is not None:
            self.model.stop()
            self.model = None

    # -- web ---------------------------------------------------------------------------

    def start_web(self, workers: int) -> None:
        """Start uvicorn; wait_for_web() returns once every web worker is up."""
        port = free_port()
        # As compose runs it (its log level and access log are uvicorn's defaults).
        argv = python(
            *f"-m uvicorn beamclaw.asgi:application --host 127.0.0.1 --port {port} "
            f"--workers {workers}".split()
        )
        if not self.access_log:
            argv.append("--no-access-log")
        self.web = Child("web", argv, self.env, self.log_dir)
        self.web_url = f"http://127.0.0.1:{port}"
        self.web_workers = workers

    def wait_for_web(self) -> None:
        workers = self.web_workers

        def up() -> bool:
            self.web.check_alive()
            return http_ok(f"{self.web_url}/healthz")

        wait_until(up, timeout=60, what="the web server")
        # uvicorn answers as soon as one worker is up; let the others finish booting.
        wait_until(
            lambda: len(process_tree(self.web.pid)) > workers,
            timeout=60,
            what=f"{workers} web workers",
        )

    # -- workers -----------------------------------------------------------------------

    def start_workers(self, count: int, threads: int, env: dict[str, str] | None = None) -> None:
        """Start `count` workers and return when all answer a ping.

        Each subscribes at start to the queues of the tenants that exist now.
        """
        self._generation += 1
        names = []
        for index in range(1, count + 1):
            name = f"worker{self._generation}-{index}"
            argv = worker_command(
                f"bench-{name}@%h",
                concurrency=threads,
                log_level="info",
                task_events=self.task_events,
            )
            self.workers.append(Child(name, argv, {**self.env, **(env or {})}, self.log_dir))
            names.append(f"bench-{name}@{NODE}")

        answered: set[str] = set()

        def all_answer() -> bool:
            for worker in self.workers:
                worker.check_alive()
            missing = [n for n in names if n not in answered]
            for reply in celery_app.control.ping(destination=missing, timeout=0.25):
                answered.update(reply)
            return answered >= set(names)

        started = time.monotonic()
        wait_until(all_answer, timeout=90, what=f"{count} worker(s) to answer a ping")
        self.say(
            f"  {count} worker(s) x {threads} threads up in {time.monotonic() - started:.1f} s"
        )

    def stop_workers(self) -> None:
        """SIGTERM the workers and go on: idle, they exit within a second or two, and
        waiting for it would only make the run longer (stop() waits at the end)."""
        for worker in self.workers:
            worker.terminate()
        self._stopped.extend(self.workers)
        self._exiting.extend(self.workers)
        self.workers = []

    # -- beat --------------------------------------------------------------------------

    def start_beat(self, env: dict[str, str] | None = None) -> None:
        """Start celery-beat; wait_for_beat() returns once it runs its schedule."""
        scheduler = "django_celery_beat.schedulers:DatabaseScheduler"
        argv = python(
            *f"-m celery -A beamclaw beat -S {scheduler} --max-interval 1 -l info".split()
        )
        self.beat = Child("beat", argv, {**self.env, **(env or {})}, self.log_dir)

    def wait_for_beat(self) -> None:
        from django.conf import settings
        from django_celery_beat.models import PeriodicTask

        entries = list(settings.CELERY_BEAT_SCHEDULE)

        def loaded() -> bool:
            self.beat.check_alive()
            return PeriodicTask.objects.filter(name__in=entries).exists()

        wait_until(loaded, timeout=60, what="celery-beat to load its schedule")

    def stop_beat(self) -> None:
        if self.beat is not None:
            self.beat.stop()
            self._stopped.append(self.beat)
            self.beat = None

    # -- all ---------------------------------------------------------------------------

    def stop(self) -> None:
        self.stop_beat()
        self.stop_workers()
        for child in self._exiting:
            child.stop()
        self._exiting = []
        if self.web is not None:
            self.web.stop()
            self.web = None
        self.stop_model()

    def errors(self) -> dict[str, int]:
        """Error lines the platform's processes logged since the last call, by message
        (timestamps cut), most frequent first."""
        counts: dict[str, int] = {}
        children = [c for c in [self.web, self.model, self.beat, *self.workers] if c]
        for child in [*self._stopped, *children]:
            for message in child.new_errors():
                message = NUMBERS.sub("N", message)[:300]
                counts[f"{child.name}: {message}"] = counts.get(f"{child.name}: {message}", 0) + 1
        self._stopped = []
        return dict(sorted(counts.items(), key=lambda item: -item[1]))

    def worker_pids(self) -> list[int]:
        return [pid for w in self.workers if w.alive() for pid in process_tree(w.pid)]

    def component_pids(
        self, redis_pid: int | None, postgres_pids: list[int]
    ) -> dict[str, list[int]]:
        """Who to charge CPU to: PostgreSQL's processes that serve the run's database
        (bench.database.postgres_pids), RabbitMQ's whole server when it is the broker."""
        broker = {"rabbitmq": pids_named("beam.smp")} if self.rabbitmq else {}
        return {
            "client": [os.getpid()],
            "web": process_tree(self.web.pid) if self.web else [],
            "workers": self.worker_pids(),
            "model": [self.model.pid] if self.model else [],
            "beat": process_tree(self.beat.pid) if self.beat else [],
            "redis": [redis_pid] if redis_pid else [],
            "postgres": postgres_pids,
            **broker,
        }


def threads_for(concurrent_turns: int, workers: int) -> int:
    return max(1, math.ceil(concurrent_turns / workers))
