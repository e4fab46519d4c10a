"""What processes use, read from /proc (Linux): CPU time and resident memory, sampled.

The platform's processes are ours (web, workers, model server, this client), Redis's and
PostgreSQL's; whatever else the machine did meanwhile is reported as `other`, so a run on
a busy machine says so instead of passing for a slow platform.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

PROC = Path("/proc")
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces: split after its end.
    return text[text.rindex(")") + 2 :].split()


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants alive now (uvicorn's workers, say)."""
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(int(entry.name))):
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def pids_named(name: str) -> list[int]:
    """Processes whose command name is `name` (e.g. every PostgreSQL backend)."""
    found = []
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process so far (0 if it is gone)."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_bytes(pids: Iterable[int]) -> int:
    total = 0
    for pid in pids:
        try:
            pages = int((PROC / str(pid) / "statm").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
        total += pages * PAGE
    return total


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent not idle, all cores together."""
    values = [int(v) for v in (PROC / "stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (values + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / TICK


Components = Callable[[], dict[str, list[int]]]


@dataclass
class CpuMeter:
    """CPU seconds per component between start() and stop(), plus the rest of the machine.

    `components` is called at both ends: a process that appears meanwhile (a new
    PostgreSQL backend) counts from zero; one that exits meanwhile is lost.
    """

    components: Components
    _start: dict[str, dict[int, float]] = field(default_factory=dict)
    _machine: float = 0.0
    _wall: float = 0.0

    def start(self) -> CpuMeter:
        self._start = {
            name: {pid: cpu_seconds(pid) for pid in pids}
            for name, pids in self.components().items()
        }
        self._machine = machine_busy_seconds()
        self._wall = time.monotonic()
        return self

    def stop(self) -> dict[str, float]:
        used: dict[str, float] = {}
        for name, pids in self.components().items():
            before = self._start.get(name, {})
            used[name] = sum(max(0.0, cpu_seconds(pid) - before.get(pid, 0.0)) for pid in pids)
        machine = machine_busy_seconds() - self._machine
        used["other"] = max(0.0, machine - sum(used.values()))
        used["wall"] = time.monotonic() - self._wall
        return used


class MemorySampler:
    """Samples the summed RSS of some processes in a thread; keeps the peak."""

    def __init__(self, pids: Callable[[], list[int]], interval: float = 0.1):
        self._pids = pids
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.first = 0
        self.peak = 0
        self.last = 0

    def __enter__(self) -> MemorySampler:
        self.first = self.peak = self.last = rss_bytes(self._pids())
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.last = rss_bytes(self._pids())
        self.peak = max(self.peak, self.last)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.peak = max(self.peak, rss_bytes(self._pids()))


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0-100) by nearest rank; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]
