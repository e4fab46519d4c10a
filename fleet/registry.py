"""Which workers are up and what each is doing.

Every worker process keeps an entry in Redis (`bc:workers:<hostname>`, a JSON value with
a TTL a few heartbeats long): its shard, whether it is active, draining or a warm standby
(fleet.standby), the sessions it is running, and how long a drain would take now. A
worker that dies stops renewing it and drops out within WORKER_HEARTBEAT_SECONDS x 3. The
admin, `GET /api/v1/ops/workers` and `manage.py drain` read it. Draining a worker is in fleet.drain.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from celery import bootsteps, signals
from django.conf import settings
from django.db import connection
from redis import RedisError

from agents.runtime import dispatch
from beamclaw.redis import get_redis, key

from . import queues

log = logging.getLogger(__name__)

# Tasks that run a session: while one runs, its session is "in flight" on this worker.
SESSION_TASKS = frozenset({dispatch.RUN_TURN, dispatch.RESUME_SESSION})
WORKERS_PREFIX = "workers"

# Set when this worker process is shutting down or drained: its entry says "draining",
# its queues stay as they are, and its running turns hand themselves back at their next
# step boundary (fleet.worker installs this as the turn loop's handover question).
draining = threading.Event()

# Set while this worker is a warm standby (fleet.standby): it consumes no queue, is listed
# as "standby" (not capacity), and is listed only once it can take the activate command.
standby = threading.Event()
_ready = threading.Event()  # worker_ready was sent: control commands are answered
# The first session task after the worker began consuming rewrites the entry at once, so
# the registry shows a new worker busy without waiting for the next heartbeat.
announce_next_task = threading.Event()


def worker_key(hostname: str) -> str:
    return key(WORKERS_PREFIX, hostname)


@dataclass
class WorkerEntry:
    """What a worker says about itself on each heartbeat."""

    hostname: str
    pid: int
    shard: str
    state: str  # "active", "draining" or "standby"
    started_at: str
    last_seen: str
    in_flight: int
    # What runs now: {"turn_id": n} or {"session_id": n} per task, as the task was sent.
    running: list[dict] = field(default_factory=list)
    concurrency: int = 0
    expected_drain_seconds: float = 0.0
    # The shard maps (fleet.models.ShardMap) its queues follow; empty: its own --shard.
    shard_map_epochs: list[int] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


class _InFlight:
    """The session tasks this process runs now, and how long a model call takes here."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[str, dict] = {}  # task id -> {"turn_id": n} or {"session_id": n}
        self.call_seconds = 0.0  # moving average of model call latency

    def started(self, task_id: str, what: dict) -> None:
        with self._lock:
            self._running[task_id] = what

    def ended(self, task_id: str) -> None:
        with self._lock:
            self._running.pop(task_id, None)

    def running(self) -> list[dict]:
        with self._lock:
            return list(self._running.values())

    def observe_call(self, seconds: float) -> None:
        self.call_seconds = (
            seconds if not self.call_seconds else 0.8 * self.call_seconds + 0.2 * seconds
        )

    def expected_drain_seconds(self) -> float:
        """A drain waits for the model calls in progress: about one call, if any runs."""
        with self._lock:
            return round(self.call_seconds, 2) if self._running else 0.0


in_flight = _InFlight()


@signals.task_prerun.connect
def _task_started(sender=None, task_id=None, task=None, kwargs=None, **extra):
    if task is not None and task.name in SESSION_TASKS:
        ids = {k: v for k, v in (kwargs or {}).items() if k in ("turn_id", "session_id")}
        in_flight.started(task_id, ids)
        if announce_next_task.is_set():
            announce_next_task.clear()
            beat_now()


@signals.task_postrun.connect
def _task_ended(sender=None, task_id=None, task=None, **extra):
    if task is not None and task.name in SESSION_TASKS:
        in_flight.ended(task_id)


def observe_provider_call(event: str, metadata: dict) -> None:
    """Telemetry handler (fleet.apps): model-call times feed the drain estimate."""
    if metadata.get("latency_s"):
        in_flight.observe_call(float(metadata["latency_s"]))


def _state() -> str:
    if draining.is_set():
        return "draining"
    return "standby" if standby.is_set() else "active"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


_heartbeat: Heartbeat | None = None


def beat_now() -> None:
    """Write this worker's entry at once (after its queues changed)."""
    if _heartbeat is not None:
        _heartbeat.beat()


class Heartbeat(bootsteps.StartStopStep):
    """Keeps this worker's registry entry fresh while it runs, and its tenant queues in
    step with the shard map (fleet.queues.reconcile).

    On a warm shutdown Celery stops this step before the pool has let its running tasks
    end, so the entry stays (state "draining") until `worker_shutdown`, sent once the
    pool is empty: a drain that waits for the entry to go waits for the turns too.
    """

    requires = ("celery.worker.components:Pool",)

    def __init__(self, worker, **options):
        self.worker = worker
        self.started_at = _now()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # One writer at a time, so an entry computed before a state change (a drain) is
        # never written after the one that shows it.
        self._write = threading.Lock()

    def entry(self) -> WorkerEntry:
        running = in_flight.running()
        return WorkerEntry(
            hostname=self.worker.hostname,
            pid=os.getpid(),
            shard=str(queues.current_shard),
            state=_state(),
            started_at=self.started_at,
            last_seen=_now(),
            in_flight=len(running),
            running=running,
            concurrency=self.worker.concurrency or 0,
            expected_drain_seconds=in_flight.expected_drain_seconds(),
            shard_map_epochs=list(queues.applied_epochs),
        )

    def beat(self) -> None:
        if standby.is_set() and not _ready.is_set():
            return  # a standby is listed once it answers control commands (worker_ready)
        interval = settings.WORKER_HEARTBEAT_SECONDS
        try:
            with self._write:
                get_redis().set(
                    worker_key(self.worker.hostname),
                    json.dumps(self.entry().as_dict()),
                    ex=max(1, round(interval * 3)),
                )
        except RedisError:  # Redis is down: the entry expires, and comes back with it
            log.warning("could not write the heartbeat of %s", self.worker.hostname)

    def _run(self) -> None:
        while True:
            self.beat()
            if self._stop.wait(settings.WORKER_HEARTBEAT_SECONDS):
                return

    def _reconcile_queues(self) -> None:
        """Every QUEUE_RECONCILE_SECONDS: if this worker's queues differ from what the
        shard map and the tenant table say, ask our own consumer thread to fix them (a
        missed broadcast, a reshard, a tenant deleted)."""
        while not self._stop.wait(settings.QUEUE_RECONCILE_SECONDS):
            if draining.is_set():
                continue
            try:
                if standby.is_set():
                    queues.prepare_standby()
                    continue
                add, cancel, epochs = queues.queues_to_change(self.worker.consumer)
                if add or cancel or epochs != queues.applied_epochs:
                    queues.request_reconcile([self.worker.hostname])
            except Exception:  # the database or broker may be away; try again next time
                log.warning("could not reconcile the queues of %s", self.worker.hostname)
            finally:
                connection.close()

    def start(self, worker) -> None:
        global _heartbeat
        _heartbeat = self
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
        self._thread.start()
        reconciler = threading.Thread(
            target=self._reconcile_queues, name="reconcile-queues", daemon=True
        )
        reconciler.start()

    def stop(self, worker) -> None:
        """Warm shutdown: keep beating while the pool finishes (see remove)."""

    def terminate(self, worker) -> None:
        """Cold shutdown: running tasks are abandoned, so the entry goes at once."""
        self.remove()

    def remove(self) -> None:
        self._stop.set()
        with contextlib.suppress(RedisError):
            get_redis().delete(worker_key(self.worker.hostname))


@signals.worker_ready.connect
def _list_when_ready(sender=None, **extra) -> None:
    if standby.is_set():
        try:
            queues.prepare_standby()
        except Exception:  # the database is away: activating it reconciles anyway
            log.warning("could not list the queues this standby will consume")
    else:
        announce_next_task.set()
    _ready.set()
    beat_now()


@signals.worker_shutdown.connect
def _remove_entry(sender=None, **extra) -> None:
    """The pool has stopped: nothing runs here any more."""
    if _heartbeat is not None:
        _heartbeat.remove()


def list_workers(*, with_standby: bool = False) -> list[dict]:
    """Every worker with a live entry, by hostname: the workers that serve (active or
    draining); with `with_standby`, warm standbys too (they serve nothing until activated, so
    capacity, drains and reshards never count them)."""
    client = get_redis()
    keys = sorted(client.scan_iter(match=worker_key("*"), count=500))
    values = client.mget(keys) if keys else []
    entries = [json.loads(value) for value in values if value]
    return [e for e in entries if with_standby or e.get("state") != "standby"]


def get_worker(hostname: str) -> dict | None:
    value = get_redis().get(worker_key(hostname))
    return json.loads(value) if value else None
