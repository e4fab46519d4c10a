"""`manage.py workers`: worker processes on one machine, as many as the load needs.

Starts `--min` Celery workers (threads pool) and `--standby` warm standbys (started,
consuming nothing: fleet.standby), restarts one that dies (with backoff, so a worker that
cannot start does not spin), follows the capacity signal (fleet.capacity) between `--min`
and `--max`, and scales down by draining the worker whose drain would be quickest (it
stops consuming, hands its turns over at a step boundary and exits). Scaling up turns a
ready standby on first (one control command) and starts a new standby in its place; it
starts a worker cold only when no standby is ready or one does not answer. A fixed
target set with `manage.py scale N` overrides the signal until `manage.py scale auto`.
A worker drained from outside (`manage.py drain`) is not restarted: the supervisor runs
one fewer from then on, until the next `manage.py scale`. SIGTERM or Ctrl-C drains every
worker, then exits. Each supervisor publishes its limits, so `scale` can say what it will
run.

Capacity comes from processes, not pool size: Celery's autoscaler cannot grow the
threads pool (fleet.checks).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from beamclaw.redis import get_redis, key

from . import capacity, drain, registry, standby
from .worker_command import worker_command

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
BACKOFF_FIRST, BACKOFF_MAX = 1.0, 30.0
HEALTHY_AFTER = 60.0  # a worker up this long resets its restart backoff
STANDBY_READY_WITHIN = 120.0  # a standby not ready this long after its start is replaced


def target_key(label: str) -> str:
    return key("supervisor", "target", label)


def scaled_key(label: str) -> str:
    """How many times `scale` was run for this label: a supervisor that sees it change
    gives back the slots of workers drained by hand."""
    return key("supervisor", "scaled", label)


def state_key(label: str, supervisor_id: str) -> str:
    return key("supervisor", "state", label, supervisor_id)


def set_fixed_target(label: str, count: int | None) -> None:
    """`manage.py scale`: a fixed worker count for this shard's supervisors (None: auto)."""
    pipe = get_redis().pipeline()
    if count is None:
        pipe.delete(target_key(label))
    else:
        pipe.set(target_key(label), count)
    pipe.incr(scaled_key(label))
    pipe.execute()


def fixed_target(label: str) -> int | None:
    value = get_redis().get(target_key(label))
    return int(value) if value is not None else None


def scale_generation(label: str) -> int:
    return int(get_redis().get(scaled_key(label)) or 0)


def supervisors_of(label: str) -> list[dict]:
    """The live supervisors of a label, as each last published itself (see publish)."""
    client = get_redis()
    keys = sorted(client.scan_iter(match=state_key(label, "*"), count=100))
    return [json.loads(value) for value in (client.mget(keys) if keys else []) if value]


def workers_for(supervisor: dict, count: int) -> tuple[int, str]:
    """How many workers `scale count` gives a supervisor, and why not `count` if not."""
    if count > supervisor["maximum"]:
        return supervisor["maximum"], f"capped by its --max {supervisor['maximum']}"
    if count < supervisor["minimum"]:
        return supervisor["minimum"], f"raised to its --min {supervisor['minimum']}"
    return count, ""


@dataclass
class Slot:
    """One worker process the supervisor runs, and its restart history."""

    name: str
    standby: bool = False  # started with --standby and not activated yet
    ready: bool = False  # a standby listed in the registry that answered a ping
    process: subprocess.Popen | None = None
    started: float = 0.0
    failures: int = 0
    restart_at: float = 0.0
    draining: bool = False

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class Supervisor:
    minimum: int
    maximum: int
    concurrency: int
    shard: str | None = None  # "k/N" passed to the workers
    interval: float = 2.0
    standby: int = 1  # warm standbys to keep besides the workers (fewer at --max)
    extra_args: list[str] = field(default_factory=list)
    slots: dict[str, Slot] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _serial: int = 0
    last_target: int = 0
    # Workers drained from outside (`manage.py drain`) since the last `scale`: the
    # target is that many lower, so they stay gone.
    withheld: int = 0
    _scale_generation: int | None = None

    # -- what to run ---------------------------------------------------------------------

    @property
    def label(self) -> str:
        """This supervisor's shard in the capacity report (`k-of-N`)."""
        if self.shard:
            index = int(self.shard.split("/")[0])
            return capacity.shard_label(index, capacity.shard_count(capacity.active_map()))
        return "all"

    @property
    def supervisor_id(self) -> str:
        return f"{os.uname().nodename}:{os.getpid()}"

    def target(self) -> int:
        """Fixed by `scale`, else the capacity signal, clamped to [min, max]; less the
        workers drained by hand since the last `scale`."""
        generation = scale_generation(self.label)
        if self._scale_generation is not None and generation != self._scale_generation:
            if self.withheld:
                log.warning("scaled: %d drained worker slot(s) are back", self.withheld)
            self.withheld = 0
        self._scale_generation = generation
        wanted = fixed_target(self.label)
        if wanted is None:
            # Beat's report if it is fresh, else computed here: a step in the load is seen
            # within one supervisor interval, not one interval plus beat's.
            report = capacity.latest_report(max_age=self.interval)
            if self.label == "all":
                # One machine's workers serve every hash shard.
                wanted = sum(
                    s["desired_workers"]
                    for s in report["shards"]
                    if not s["shard"].startswith("dedicated-")
                )
            else:
                wanted = report["by_shard"].get(self.label, self.minimum)
        return max(0, max(self.minimum, min(self.maximum, wanted)) - self.withheld)

    def publish(self) -> None:
        """Say who this supervisor is and what it runs, for `manage.py scale`."""
        state = {
            "supervisor": self.supervisor_id,
            "label": self.label,
            "minimum": self.minimum,
            "maximum": self.maximum,
            "withheld": self.withheld,
            "target": self.last_target,
            "workers": len(self.running()),
            "standby": len(self.standbys()),
            "seen_at": time.time(),
        }
        ttl = max(10, round(self.interval * 5))
        get_redis().set(state_key(self.label, self.supervisor_id), json.dumps(state), ex=ttl)

    def argv(self, slot: Slot) -> list[str]:
        return worker_command(
            f"{slot.name}@%h",
            concurrency=self.concurrency,
            log_level=settings.LOG_LEVEL.lower(),
            shard=self.shard,
            standby=slot.standby,
            extra_args=self.extra_args,
        )

    # -- processes -----------------------------------------------------------------------

    def _new_name(self) -> str:
        self._serial += 1
        prefix = f"w{os.getpid()}"
        return f"{prefix}-{self._serial}"

    def _spawn(self, slot: Slot) -> None:
        slot.process = subprocess.Popen(self.argv(slot), cwd=ROOT)
        slot.started = time.monotonic()
        slot.ready = False
        kind = "standby" if slot.standby else "worker"
        log.warning("started %s %s (pid %d)", kind, slot.name, slot.process.pid)

    def hostname(self, slot: Slot) -> str:
        return f"{slot.name}@{os.uname().nodename}"

    def running(self) -> list[Slot]:
        """The workers that serve (a standby is not capacity until it is activated)."""
        return [s for s in self.slots.values() if not s.draining and not s.standby]

    def standbys(self) -> list[Slot]:
        return [s for s in self.slots.values() if not s.draining and s.standby]

    def _add(self, *, standby: bool) -> None:
        slot = Slot(self._new_name(), standby=standby)
        self.slots[slot.name] = slot
        self._spawn(slot)

    def scale_up(self, count: int) -> None:
        """Activate ready standbys first; start the rest cold."""
        ready = sorted((s for s in self.standbys() if s.ready and s.alive), key=lambda s: s.started)
        for _ in range(count):
            if not (ready and self._activate(ready.pop(0))):
                self._add(standby=False)

    def _confirm_ready(self, slot: Slot) -> bool:
        """Listed as a standby, and answers: checked once per standby, before it is needed."""
        try:
            entry = registry.get_worker(self.hostname(slot))
            if not entry or entry["state"] != "standby":
                return False
            return standby.answers(self.hostname(slot), timeout=0.5)
        except Exception:  # Redis is away: not ready
            return False

    def _activate(self, slot: Slot) -> bool:
        began = time.monotonic()
        try:
            answered = standby.send_activate(self.hostname(slot))
        except Exception:  # the broker is away
            answered = False
        if answered:
            slot.standby = False
            log.warning("activated standby %s (%.3f s)", slot.name, time.monotonic() - began)
            return True
        # A standby that cannot take a command is no use: replace it.
        log.warning("standby %s did not answer: starting a worker cold", slot.name)
        self._terminate(slot)
        return False

    def _terminate(self, slot: Slot) -> None:
        """SIGTERM a worker with nothing to drain (a standby); it is gone once it exits."""
        slot.draining = True
        if slot.alive:
            slot.process.send_signal(signal.SIGTERM)

    def keep_standbys(self) -> None:
        """`standby` standbys, fewer near --max: a standby there could never be activated."""
        wanted = max(0, min(self.standby, self.maximum - len(self.running())))
        have = sorted(self.standbys(), key=lambda s: (not s.ready, s.started))  # keep ready ones
        for _ in range(wanted - len(have)):
            self._add(standby=True)
        for slot in have[wanted:]:
            log.warning("stopping surplus standby %s", slot.name)
            self._terminate(slot)
        for slot in self.standbys():
            if not slot.alive or slot.ready:
                continue
            if self._confirm_ready(slot):
                slot.ready = True
                log.warning("standby %s is ready", slot.name)
            elif time.monotonic() - slot.started > STANDBY_READY_WITHIN:
                log.warning("standby %s never answered: replacing it", slot.name)
                self._terminate(slot)

    def scale_down(self, count: int) -> None:
        """Drain the `count` workers whose drain is expected to be quickest."""
        entries = {e["hostname"]: e for e in registry.list_workers()}

        def drain_cost(slot: Slot) -> tuple[float, int]:
            entry = entries.get(self.hostname(slot), {})
            return (entry.get("expected_drain_seconds", 0.0), entry.get("in_flight", 0))

        for slot in sorted(self.running(), key=drain_cost)[:count]:
            slot.draining = True
            answers = drain.send_drain([self.hostname(slot)])
            if self.hostname(slot) not in answers and slot.alive:
                slot.process.send_signal(signal.SIGTERM)  # not answering: drain by signal
            log.warning("draining worker %s", slot.name)

    def restart_dead(self, now: float) -> None:
        for name, slot in list(self.slots.items()):
            if slot.alive:
                if now - slot.started > HEALTHY_AFTER:
                    slot.failures = 0
                continue
            drained = slot.process is not None and self._take_drained_mark(slot)
            if slot.draining or (drained and slot.standby):
                # Drained, stopped, or died draining: gone for good (a standby drained by
                # hand is replaced by keep_standbys, as it never was capacity).
                del self.slots[name]
                continue
            if drained:
                del self.slots[name]
                self.withheld += 1
                log.warning(
                    "worker %s was drained: not restarting it; running one fewer "
                    "(%d drained by hand) until `manage.py scale`",
                    name,
                    self.withheld,
                )
                continue
            if slot.restart_at == 0.0:
                code = slot.process.returncode if slot.process else None
                slot.failures += 1
                delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (slot.failures - 1))
                slot.restart_at = now + delay
                log.warning(
                    "%s %s exited (%s); restarting in %.0f s",
                    "standby" if slot.standby else "worker",
                    name,
                    code,
                    delay,
                )
            elif now >= slot.restart_at:
                slot.restart_at = 0.0
                self._spawn(slot)

    def _take_drained_mark(self, slot: Slot) -> bool:
        try:
            return drain.take_drained_mark(self.hostname(slot))
        except Exception:  # Redis is away: an exit we cannot explain is a crash
            return False

    def tick(self) -> None:
        now = time.monotonic()
        self.restart_dead(now)
        try:
            target = self.target()
        except Exception:  # the database or Redis is away: hold steady
            log.warning("no capacity signal; keeping %d worker(s)", len(self.running()))
            return
        if target != self.last_target:
            log.warning("target %d -> %d worker(s)", self.last_target, target)
        self.last_target = target
        current = len(self.running())
        if target > current:
            self.scale_up(target - current)
        elif target < current:
            self.scale_down(current - target)
        self.keep_standbys()
        try:
            self.publish()
        except Exception:  # Redis is away; `scale` then cannot name this supervisor
            log.warning("could not publish the supervisor's state")

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> None:
        self.scale_up(self.minimum)
        self.keep_standbys()
        while not self._stop.wait(self.interval):
            self.tick()
        self.shutdown()
        with contextlib.suppress(Exception):
            get_redis().delete(state_key(self.label, self.supervisor_id))

    def stop(self, *_args: object) -> None:
        self._stop.set()

    def shutdown(self, timeout: float | None = None) -> None:
        """SIGTERM to every worker and standby (each drains), then wait for them."""
        timeout = timeout or settings.WORKER_SHUTDOWN_GRACE_SECONDS + 5
        for slot in self.slots.values():
            if slot.alive:
                slot.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for slot in self.slots.values():
            if slot.process is not None:
                try:
                    slot.process.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    slot.process.kill()
