"""`manage.py workers`: worker processes on one machine, as many as the load needs.

Starts `--min` Celery workers (threads pool), restarts one that dies (with backoff, so a
worker that cannot start does not spin), follows the capacity signal (agents.capacity)
between `--min` and `--max`, and scales down by draining the worker whose drain would be
quickest (it stops consuming, hands its turns over at a step boundary and exits). A fixed
target set with `manage.py scale N` overrides the signal until `manage.py scale auto`.
SIGTERM or Ctrl-C drains every worker, then exits.

Capacity comes from processes, not pool size: Celery's autoscaler cannot grow the
threads pool (beamclaw.checks).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from beamclaw import workers
from beamclaw.redis import get_redis, key

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
BACKOFF_FIRST, BACKOFF_MAX = 1.0, 30.0
HEALTHY_AFTER = 60.0  # a worker up this long resets its restart backoff


def target_key(label: str) -> str:
    return key("supervisor", "target", label)


def set_fixed_target(label: str, count: int | None) -> None:
    """`manage.py scale`: a fixed worker count for this shard's supervisors (None: auto)."""
    if count is None:
        get_redis().delete(target_key(label))
    else:
        get_redis().set(target_key(label), count)


def fixed_target(label: str) -> int | None:
    value = get_redis().get(target_key(label))
    return int(value) if value is not None else None


@dataclass
class Slot:
    """One worker process the supervisor runs, and its restart history."""

    name: str
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
    extra_args: list[str] = field(default_factory=list)
    slots: dict[str, Slot] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _serial: int = 0
    last_target: int = 0

    # -- what to run ---------------------------------------------------------------------

    @property
    def label(self) -> str:
        """This supervisor's shard in the capacity report (`k-of-N`)."""
        from agents import capacity

        if self.shard:
            index = int(self.shard.split("/")[0])
            return capacity.shard_label(index, capacity.shard_count(capacity.active_map()))
        return "all"

    def target(self) -> int:
        """Fixed by `scale`, else the capacity signal, clamped to [min, max]."""
        from agents import capacity

        wanted = fixed_target(self.label)
        if wanted is None:
            report = capacity.latest_report()
            if self.label == "all":
                # One machine's workers serve every hash shard.
                wanted = sum(
                    s["desired_workers"]
                    for s in report["shards"]
                    if not s["shard"].startswith("dedicated-")
                )
            else:
                wanted = report["by_shard"].get(self.label, self.minimum)
        return max(self.minimum, min(self.maximum, wanted))

    def argv(self, name: str) -> list[str]:
        args = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "beamclaw",
            "worker",
            "-P",
            "threads",
            "-c",
            str(self.concurrency),
            "-Q",
            "beamclaw",
            "--without-gossip",
            "--without-mingle",
            "-n",
            f"{name}@%h",
            "-l",
            settings.LOG_LEVEL.lower(),
        ]
        if self.shard:
            args += ["--shard", self.shard]
        return args + self.extra_args

    # -- processes -----------------------------------------------------------------------

    def _new_name(self) -> str:
        self._serial += 1
        prefix = f"w{os.getpid()}"
        return f"{prefix}-{self._serial}"

    def _spawn(self, slot: Slot) -> None:
        slot.process = subprocess.Popen(self.argv(slot.name), cwd=ROOT)
        slot.started = time.monotonic()
        log.warning("started worker %s (pid %d)", slot.name, slot.process.pid)

    def hostname(self, slot: Slot) -> str:
        return f"{slot.name}@{os.uname().nodename}"

    def running(self) -> list[Slot]:
        return [s for s in self.slots.values() if not s.draining]

    def scale_up(self, count: int) -> None:
        for _ in range(count):
            slot = Slot(self._new_name())
            self.slots[slot.name] = slot
            self._spawn(slot)

    def scale_down(self, count: int) -> None:
        """Drain the `count` workers whose drain is expected to be quickest."""
        entries = {e["hostname"]: e for e in workers.list_workers()}

        def drain_cost(slot: Slot) -> tuple[float, int]:
            entry = entries.get(self.hostname(slot), {})
            return (entry.get("expected_drain_seconds", 0.0), entry.get("in_flight", 0))

        for slot in sorted(self.running(), key=drain_cost)[:count]:
            slot.draining = True
            answers = workers.send_drain([self.hostname(slot)])
            if self.hostname(slot) not in answers and slot.alive:
                slot.process.send_signal(signal.SIGTERM)  # not answering: drain by signal
            log.warning("draining worker %s", slot.name)

    def restart_dead(self, now: float) -> None:
        for name, slot in list(self.slots.items()):
            if slot.alive:
                if now - slot.started > HEALTHY_AFTER:
                    slot.failures = 0
                continue
            if slot.draining:
                del self.slots[name]  # drained (or died draining): gone for good
                continue
            if slot.restart_at == 0.0:
                code = slot.process.returncode if slot.process else None
                slot.failures += 1
                delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (slot.failures - 1))
                slot.restart_at = now + delay
                log.warning("worker %s exited (%s); restarting in %.0f s", name, code, delay)
            elif now >= slot.restart_at:
                slot.restart_at = 0.0
                self._spawn(slot)

    def tick(self) -> None:
        now = time.monotonic()
        self.restart_dead(now)
        try:
            target = self.target()
        except Exception:  # the database or Redis is away: hold steady
            log.warning("no capacity signal; keeping %d worker(s)", len(self.running()))
            return
        self.last_target = target
        current = len(self.running())
        if target > current:
            self.scale_up(target - current)
        elif target < current:
            self.scale_down(current - target)

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> None:
        self.scale_up(self.minimum)
        while not self._stop.wait(self.interval):
            self.tick()
        self.shutdown()

    def stop(self, *_args: object) -> None:
        self._stop.set()

    def shutdown(self, timeout: float | None = None) -> None:
        """SIGTERM to every worker (each drains), then wait for them."""
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
