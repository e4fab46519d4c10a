"""Harness for the fleet tests: real web, worker and beat processes, killed for real.

Each test gets its own stack: a fresh `redis-server` (no persistence) that only this
test's processes use, with short lease and reaper timings in their environment. So the
session-wide `worker` (which shares the suite's Redis) never runs these turns or the
reaper with its default timings; on top of that the tenant is `dedicated_workers=True`
and the stack's workers are started with `--tenants <slug>`. The test process talks to
the stack over HTTP and reads the outcome from the database.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis
from celery import Celery

from agents.models import FINAL_STATUSES, Message, Turn
from beamclaw.redis import broker_key_prefix
from fleet.shards import shard_index
from fleet.worker_command import worker_command
from tenants.models import Tenant, UsageRecord
from tenants.services import issue_api_key
from tests.conftest import TEST_WORKER_LOG_LEVEL
from tests.support import Process, free_port, launch_web, make_agent, python, wait_until

# Short timings so a dead worker is noticed in a few seconds (the defaults are 30/10/15/30/5).
SUPERVISION_TIMINGS = {
    "TURN_LEASE_SECONDS": "3",
    "TURN_LEASE_RENEW_SECONDS": "1",
    "TURN_LEASE_GRACE_SECONDS": "1",
    "TURN_REDISPATCH_AFTER_SECONDS": "2",
    "REAPER_INTERVAL_SECONDS": "1",
    "TURN_MAX_ATTEMPTS": "3",
    "WORKER_SHUTDOWN_GRACE_SECONDS": "10",
    "PROVIDER_MAX_RETRIES": "3",
    "PROVIDER_BACKOFF_BASE": "0.01",
}
NODE = os.uname().nodename


# --- A private Redis ---------------------------------------------------------------------


class RedisServer:
    """A `redis-server` of our own on a free port, without persistence: a restart empties it."""

    def __init__(self, log_dir: Path, name: str):
        self.log_dir = log_dir
        self.name = name
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.workdir = tempfile.mkdtemp(prefix="beamclaw-redis-")
        self.process: Process | None = None
        self.starts = 0

    def start(self) -> RedisServer:
        self.starts += 1
        args = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self.workdir,
        ]
        self.process = Process(f"{self.name}-{self.starts}", args, dict(os.environ), self.log_dir)
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)

        def answers() -> bool:
            assert self.process.alive(), f"redis-server exited:\n{self.process.log()[-2000:]}"
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        wait_until(answers, timeout=10, message="the private redis-server")
        client.close()
        return self

    def kill(self) -> None:
        """SIGKILL: everything in it (queues, leases, streams) is gone."""
        assert self.process is not None
        self.process.kill()
        self.process.proc.wait(5)
        self.process.stop()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


# --- The stack -----------------------------------------------------------------------------


@dataclass
class DedicatedTenant:
    tenant: Tenant
    key: str

    @property
    def slug(self) -> str:
        return self.tenant.slug

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


class Stack:
    """Web, workers and beat of one test, on the private Redis and the test database."""

    def __init__(self, env: dict[str, str], log_dir: Path, prefix: str, tenant: DedicatedTenant):
        self.env = env
        self.log_dir = log_dir
        self.prefix = prefix
        self.tenant = tenant
        self.workers: dict[str, Process] = {}
        self.others: list[Process] = []
        self.base_url: str | None = None
        self._http: httpx.Client | None = None
        # Celery prefers a CELERY_BROKER_URL in this process's environment (the suite's
        # Redis) over `broker=`; the read/write URLs win over both.
        broker = env["CELERY_BROKER_URL"]
        self._probe = Celery("probe", set_as_current=False)
        # The platform's broker keys carry the installation's prefix; a plain app's must too.
        self._probe.conf.update(
            broker_read_url=broker,
            broker_write_url=broker,
            broker_transport_options={"global_keyprefix": broker_key_prefix()},
        )
        self._restarts: dict[str, int] = {}
        self.shards: dict[str, str] = {}  # worker name -> "k/N" for hash-shard workers

    # -- processes ------------------------------------------------------------------------

    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> Process:
        return Process(f"{self.prefix}-{name}", args, env or self.env, self.log_dir)

    def hostname(self, name: str) -> str:
        return f"{self.prefix}-{name}@{NODE}"

    def _spawn_worker(self, name: str, env: dict[str, str] | None = None) -> Process:
        count = self._restarts.get(name, 0)
        self._restarts[name] = count + 1
        log_name = name if count == 0 else f"{name}-restart{count}"
        level = (env or self.env).get("LOG_LEVEL", TEST_WORKER_LOG_LEVEL).lower()
        # Dedicated to the test's tenant, unless the test gave the worker a hash shard.
        shard = self.shards.get(name)
        args = worker_command(
            f"{self.prefix}-{name}@%h",
            log_level=level,
            shard=shard,
            tenants=None if shard else self.tenant.slug,
        )
        return self._spawn(log_name, args, env)

    def answers_ping(self, name: str) -> bool:
        """Whether worker `name` still consumes (a warm shutdown stops that first)."""
        return bool(self._probe.control.ping(destination=[self.hostname(name)], timeout=0.3))

    def _worker_ready(self, name: str) -> bool:
        process = self.workers[name]
        assert process.alive(), f"worker {name} exited:\n{process.log()[-3000:]}"
        return self.answers_ping(name)

    def _launch_beat(self):
        """celery-beat with the production scheduler (django-celery-beat, in the database)."""
        from django_celery_beat.models import PeriodicTask

        beat = self._spawn(
            "beat",
            python(
                "-m",
                "celery",
                "-A",
                "beamclaw",
                "beat",
                "-l",
                "warning",
                "-S",
                "django_celery_beat.schedulers:DatabaseScheduler",
                "--schedule",
                str(self.log_dir / f"{self.prefix}-beat-schedule"),
            ),
        )
        self.others.append(beat)

        def scheduled() -> bool:
            assert beat.alive(), f"beat exited:\n{beat.log()[-3000:]}"
            return PeriodicTask.objects.filter(task="agents.reap_stale_turns").exists()

        return scheduled

    def _launch_web(self):
        web, self.base_url, healthy = launch_web(self.env, self.log_dir, f"{self.prefix}-web")
        self.others.append(web)
        self._http = httpx.Client(base_url=self.base_url, headers=self.tenant.headers, timeout=30)
        return healthy

    def start(self, *, web: bool = False, workers: tuple[str, ...] = (), beat: bool = False):
        """Launch the processes side by side; return once each one is ready.

        Workers answer a ping; beat has put the reaper in its schedule; web answers
        /healthz.
        """
        checks = []
        if web:
            checks.append(("web", self._launch_web()))
        for name in workers:
            assert name not in self.workers or not self.workers[name].alive()
            self.workers[name] = self._spawn_worker(name)
            checks.append((f"worker {name}", lambda name=name: self._worker_ready(name)))
        if beat:
            checks.append(("beat", self._launch_beat()))
        pending = dict(checks)

        def all_ready() -> bool:
            for label, check in list(pending.items()):
                if check():
                    del pending[label]
            return not pending

        wait_until(all_ready, timeout=90, interval=0.1, message=f"{list(pending)} to be ready")
        return self

    def restart_worker(self, name: str, *, wait: bool = True) -> Process:
        """Start `name` again after it died (as a process supervisor would)."""
        old = self.workers[name]
        assert not old.alive(), f"{name} is still running"
        old.stop()
        self.workers[name] = self._spawn_worker(name)
        if wait:
            wait_until(lambda: self._worker_ready(name), timeout=60, message=f"{name} to answer")
        return self.workers[name]

    def registry(self) -> dict[str, dict]:
        """The worker registry (fleet.registry), read from the stack's private Redis."""
        from django.test import override_settings

        from fleet.registry import list_workers

        with override_settings(REDIS_URL=self.env["REDIS_URL"]):
            return {entry["hostname"]: entry for entry in list_workers()}

    def worker_pids(self) -> dict[int, str]:
        return {p.proc.pid: name for name, p in self.workers.items() if p.alive()}

    def active_tasks(self, name: str) -> list[dict]:
        """The tasks worker `name` is running now (it must be alive and responsive)."""
        hostname = self.hostname(name)
        reply = self._probe.control.inspect([hostname], timeout=2).active() or {}
        assert hostname in reply, f"{name} did not answer inspect"
        return reply[hostname]

    # -- HTTP -------------------------------------------------------------------------------

    def post_message(self, key: str, content: str, **extra) -> httpx.Response:
        assert self._http is not None, "start(web=True) first"
        return self._http.post(
            f"/api/v1/sessions/{key}/messages", json={"content": content, **extra}
        )

    def send(self, key: str, content: str, **extra) -> dict:
        """Submit a message like a client; the turn is accepted (202)."""
        response = self.post_message(key, content, **extra)
        assert response.status_code == 202, (response.status_code, response.text)
        return response.json()

    def get_turn(self, turn_id: int) -> dict:
        assert self._http is not None, "start(web=True) first"
        response = self._http.get(f"/api/v1/turns/{turn_id}")
        assert response.status_code == 200, response.text
        return response.json()

    # -- teardown ---------------------------------------------------------------------------

    def stop(self) -> None:
        if self._http is not None:
            self._http.close()
        for process in [*self.workers.values(), *self.others]:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if process.alive():
                    os.killpg(process.proc.pid, signal.SIGCONT)  # a SIGSTOPped one too
        # Workers first (they write the database), then beat and web; in parallel.
        stoppers = [
            threading.Thread(target=p.stop, kwargs={"timeout": 15}) for p in self.workers.values()
        ]
        for thread in stoppers:
            thread.start()
        for thread in stoppers:
            thread.join()
        for process in self.others:
            process.stop(timeout=10)
        self._probe.close()


def _log_prefix(request) -> str:
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name).strip("-")
    return name.removeprefix("test_")[:60]


@pytest.fixture
def private_redis(log_dir, request):
    server = RedisServer(log_dir, f"{_log_prefix(request)}-redis").start()
    yield server
    server.stop()


@pytest.fixture
def supervision_env(platform_env, private_redis) -> dict[str, str]:
    """The child processes' environment: the private Redis and the short timings."""
    env = dict(platform_env)
    env.update(
        REDIS_URL=private_redis.url,
        CELERY_BROKER_URL=private_redis.url,
        CELERY_RESULT_BACKEND=private_redis.url,
        **SUPERVISION_TIMINGS,
    )
    # SUPERVISION_LOG_LEVEL=INFO shows every hand-back and re-dispatch in the process logs.
    env["LOG_LEVEL"] = os.environ.get("SUPERVISION_LOG_LEVEL", env.get("LOG_LEVEL", "WARNING"))
    return env


@pytest.fixture
def dedicated(transactional_db) -> DedicatedTenant:
    """A tenant only this test's workers consume (no broadcast, `dedicated_workers`)."""
    tenant = Tenant.objects.create(
        slug=f"sup-{uuid.uuid4().hex[:8]}", name="Supervised", dedicated_workers=True
    )
    return DedicatedTenant(tenant, issue_api_key(tenant=tenant, name="test").secret)


@pytest.fixture
def stack(supervision_env, log_dir, dedicated, request):
    """The test's stack; start what it needs with start_web / start_workers / start_beat."""
    running = Stack(supervision_env, log_dir, _log_prefix(request), dedicated)
    yield running
    running.stop()


def hash_shard_tenants(model, count: int, shard_of_2: int | None = None) -> dict[str, str]:
    """`count` tenants served by hash shards (slug -> API key), each with agent `ops`;
    with `shard_of_2`, only slugs of that shard of 2. Created without the broadcast."""
    keys = {}
    prefix = f"hs{uuid.uuid4().hex[:6]}"
    candidates = (f"{prefix}-{i}" for i in range(10_000))
    while len(keys) < count:
        slug = next(candidates)
        if shard_of_2 is not None and shard_index(slug, 2) != shard_of_2:
            continue
        tenant = Tenant.objects.create(slug=slug, name=slug)
        make_agent(tenant, model)
        keys[slug] = issue_api_key(tenant=tenant, name="test").secret
    return keys


@pytest.fixture
def ops(dedicated, model):
    """Agent `ops` of the dedicated tenant, on the fake model server."""
    return make_agent(dedicated.tenant, model)


# --- Which worker made a model call ------------------------------------------------------


def _socket_inodes_with_local_port(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{fields[9]}]")
    return inodes


def pid_owning_port(port: int, candidates: list[int]) -> int | None:
    """Which of `candidates` has a TCP socket bound to local `port` (Linux /proc)."""
    inodes = _socket_inodes_with_local_port(port)
    for pid in candidates:
        fd_dir = f"/proc/{pid}/fd"
        with contextlib.suppress(FileNotFoundError, ProcessLookupError, PermissionError):
            for fd in os.listdir(fd_dir):
                with contextlib.suppress(OSError):
                    if os.readlink(f"{fd_dir}/{fd}") in inodes:
                        return pid
    return None


class CallerTracker:
    """Tags every request the fake model server gets with the stack worker that sent it.

    The server's handler is wrapped to remember the client's address per thread, and a
    first rule that never matches looks up which worker process owns that socket and
    stores it in the request record (`record["worker"]`, `record["pid"]`). `on_call`
    callbacks run right there, while the caller waits for its answer.
    """

    def __init__(self, server, stack: Stack):
        self.server = server
        self.stack = stack
        self._local = threading.local()
        self._original = server._serve
        self.callbacks: list = []

        def serve(handler):
            self._local.peer = handler.client_address
            return self._original(handler)

        server._serve = serve
        server.add_rule(match=self._tag)

    def _tag(self, record: dict) -> bool:
        peer = getattr(self._local, "peer", None)
        pids = self.stack.worker_pids()
        pid = pid_owning_port(peer[1], list(pids)) if peer else None
        record["pid"] = pid
        record["worker"] = pids.get(pid)
        for callback in self.callbacks:
            callback(record)
        return False

    def uninstall(self) -> None:
        with contextlib.suppress(AttributeError):
            del self.server._serve  # back to the class's method


@pytest.fixture
def callers(model, stack):
    tracker = CallerTracker(model, stack)
    yield tracker
    tracker.uninstall()


# --- Reading the outcome -------------------------------------------------------------------


def wait_for_turns(turn_ids: list[int], timeout: float) -> dict[int, Turn]:
    """Wait until every turn ended; fail with the stragglers' states."""
    deadline = time.monotonic() + timeout
    while True:
        turns = {t.pk: t for t in Turn.objects.filter(pk__in=turn_ids)}
        if all(t.status in FINAL_STATUSES for t in turns.values()) and len(turns) == len(turn_ids):
            return turns
        if time.monotonic() > deadline:
            stragglers = sorted(
                (t.pk, t.session_id, t.status, t.attempts, t.error_code)
                for t in turns.values()
                if t.status not in FINAL_STATUSES
            )
            raise AssertionError(
                f"{len(stragglers)} turn(s) unfinished after {timeout}s "
                f"(id, session, status, attempts, error): {stragglers[:20]}"
            )
        time.sleep(0.1)


def not_succeeded(turns: dict[int, Turn]) -> list[tuple]:
    """(id, status, attempts, error code, error message) of the turns that did not succeed."""
    return sorted(
        (t.pk, t.status, t.attempts, t.error_code, t.error_message[:160])
        for t in turns.values()
        if t.status != "succeeded"
    )


def answers_per_turn(turn_ids: list[int]) -> dict[int, int]:
    counts = dict.fromkeys(turn_ids, 0)
    for turn_id in Message.objects.filter(turn_id__in=turn_ids, role="assistant").values_list(
        "turn_id", flat=True
    ):
        counts[turn_id] += 1
    return counts


def last_user_text(record: dict) -> str:
    return next(m["content"] for m in reversed(record["messages"]) if m["role"] == "user")


def assert_ledger_matches_received_calls(model, turns: dict[int, Turn], lost: set[int]) -> None:
    """One usage record per model call a live worker received, none lost or doubled, with
    the tokens each turn counted. `lost`: ids of the records whose caller died first."""
    content_of = {
        turn_id: content
        for turn_id, content in Message.objects.filter(turn_id__in=turns, role="user").values_list(
            "turn_id", "content"
        )
    }
    received = Counter(
        last_user_text(r) for r in model.requests if r["status"] == 200 and id(r) not in lost
    )
    records = UsageRecord.objects.filter(turn_id__in=turns)
    on_ledger = Counter(
        content_of[turn_id] for turn_id in records.values_list("turn_id", flat=True)
    )
    assert on_ledger == received
    for turn in turns.values():
        mine = records.filter(turn=turn)
        assert sum(r.input_tokens for r in mine) == turn.input_tokens, turn.pk
        assert sum(r.output_tokens for r in mine) == turn.output_tokens, turn.pk


def wait_exit(process: Process, timeout: float) -> float:
    """Seconds until `process` exited; fail after `timeout`."""
    started = time.monotonic()
    try:
        process.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(
            f"{process.name} still running {timeout}s later:\n{process.log()[-3000:]}"
        ) from None
    return time.monotonic() - started
