"""elastic: a 10x surge under `manage.py workers --min 1 --max 6 --standby 1`, beside
static pools of one and of six workers.

Turns of 1 s arrive at 4/s for a minute, 40/s for a minute, then 4/s again, over 200
sessions. The supervisor follows the capacity signal (celery-beat computes it every
second here; the supervisor computes it itself when beat's report is older than its
0.5 s interval) and turns its warm standby on first; the static runs have one, then six,
workers throughout, with the same arrivals. A sampler reads the worker registry and the
queued turns every 0.25 s, so the report can say when the first new worker took work,
when the surge's backlog was gone, and how many worker-seconds each run used: the static
pool of six is run, not multiplied. Worker-seconds count the standby too: it holds a
process's memory while it waits.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime

from django.db import connection
from django.db.models import Count, Q
from django.utils import timezone

from agents.models import MessageRole, Turn, TurnStatus
from fleet.registry import list_workers

from ..context import Bench, BenchTenant
from ..load import Api, Job, Outcome, Progress, run_paced
from ..measure import percentile
from ..platform import Child, python
from ..report import Result, num, ratio

MAX_WORKERS = 6
THREADS = 8


@dataclass
class Sample:
    at: float  # seconds since the run started
    workers: set[str]  # active: consuming
    busy: set[str]  # workers with a turn in flight
    queued: int
    standby: set[str] = field(default_factory=set)  # started, consuming nothing


@dataclass
class Timeline:
    started: float = field(default_factory=time.monotonic)
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        try:
            while not self._stop.wait(0.25):
                listed = list_workers(with_standby=True)
                entries = [e for e in listed if e["state"] == "active"]
                queued = Turn.objects.filter(status=TurnStatus.QUEUED).count()
                self.samples.append(
                    Sample(
                        time.monotonic() - self.started,
                        {e["hostname"] for e in entries},
                        {e["hostname"] for e in entries if e["in_flight"]},
                        queued,
                        {e["hostname"] for e in listed if e["state"] == "standby"},
                    )
                )
        finally:
            connection.close()

    def __enter__(self) -> Timeline:
        self._thread = threading.Thread(target=self.run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def worker_seconds(self, *, standby: bool = False) -> float:
        """Seconds of active workers (of standbys with `standby`) over the run."""
        total, previous = 0.0, 0.0
        for sample in self.samples:
            total += len(sample.standby if standby else sample.workers) * (sample.at - previous)
            previous = sample.at
        return total


def _send_phases(
    bench: Bench, jobs: list[Job], phases: list[tuple[float, float]]
) -> tuple[list[Outcome], list[float], list[datetime]]:
    """Paced arrivals, phase after phase; returns each phase's outcome and start time
    (monotonic, and wall clock to compare with the turns' created_at)."""
    sessions = itertools.cycle(jobs)
    starts: list[float] = []
    walls: list[datetime] = []

    async def go() -> list[Outcome]:
        outcomes = []
        async with Api(bench.platform.web_url, connections=64) as api:
            for rate, seconds in phases:
                count = round(rate * seconds)
                starts.append(time.monotonic())
                walls.append(timezone.now())
                with bench.bar(f"{rate:g}/s for {seconds:g} s", count) as bar:
                    outcomes.append(
                        await run_paced(
                            sessions,
                            lambda job: api.send(job, wait=None),
                            interval=1 / rate,
                            until=lambda started, count=count: started >= count,
                            progress=Progress(bar),
                        )
                    )
        return outcomes

    outcomes = bench.run(go())
    return outcomes, starts, walls


def _one_run(
    bench: Bench,
    tenant: BenchTenant,
    jobs: list[Job],
    phases: list[tuple[float, float]],
    *,
    static_workers: int | None,
    env: dict[str, str],
) -> dict:
    """One run of the phases: under the supervisor (static_workers None) or a static pool."""
    elastic = static_workers is None
    label = "elastic" if elastic else f"static {static_workers}"
    since = timezone.now()
    supervisor = None
    if elastic:
        supervisor = Child(
            "supervisor",
            python(
                *f"manage.py workers --min 1 --max {MAX_WORKERS} --concurrency {THREADS} "
                "--standby 1 --interval 0.5".split()
            ),
            {**bench.platform.env, **env},
            bench.platform.log_dir,
        )
    else:
        bench.platform.start_workers(static_workers, THREADS, env=env)
    try:
        with Timeline() as timeline:
            deadline = time.monotonic() + 60
            while not timeline.samples or not timeline.samples[-1].workers:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no {label} worker came up")
                time.sleep(0.25)
            origin = time.monotonic()
            bench.say(f"  {label}: sending")
            outcomes, starts, walls = _send_phases(bench, jobs, phases)
            unfinished = bench.unfinished([tenant], timeout=600)
            end = time.monotonic()
    finally:
        if supervisor is not None:
            supervisor.stop(timeout=60)
        else:
            bench.platform.stop_workers()

    starts = [s - timeline.started for s in starts]
    surge_start, surge_end = starts[1], starts[2]
    turns = Turn.objects.filter(tenant_id=tenant.id, created_at__gte=since)
    phase_waits = _phase_waits(turns, walls)
    before = next((s for s in timeline.samples if s.at >= surge_start), None)
    first_new = next(
        (
            s.at - surge_start
            for s in timeline.samples
            if s.at >= surge_start and before and s.busy - before.workers
        ),
        None,
    )
    backlog_empty = next(
        (s.at - surge_end for s in timeline.samples if s.at >= surge_end and s.queued == 0),
        None,
    )
    counted = turns.annotate(
        answers=Count("messages", filter=Q(messages__role=MessageRole.ASSISTANT))
    )
    submitted = sum(o.completed for o in outcomes)
    duration = end - origin
    standby_seconds = timeline.worker_seconds(standby=True)
    return {
        "submitted": submitted,
        "not_accepted": sum(o.failed for o in outcomes),
        "lost": submitted - counted.filter(status=TurnStatus.SUCCEEDED, answers__gte=1).count(),
        "duplicated": counted.filter(answers__gt=1).count(),
        "unfinished": unfinished,
        "phase_waits": phase_waits,
        "first_new_worker_s": round(first_new, 2) if first_new is not None else None,
        "backlog_empty_after_surge_s": round(backlog_empty, 2)
        if backlog_empty is not None
        else None,
        "peak_workers": max((len(s.workers) for s in timeline.samples), default=0),
        # Standbys included: they consume nothing but hold a worker process's memory.
        "worker_seconds": round(timeline.worker_seconds() + standby_seconds, 1),
        "standby_seconds": round(standby_seconds, 1),
        "duration_s": round(duration, 1),
    }


# The static pool of one in a quick run, which skips it.
NOT_RUN = {
    "lost": None,
    "duplicated": None,
    "unfinished": {},
    "not_accepted": 0,
    "phase_waits": [{"p50_s": None, "p99_s": None}] * 3,
    "backlog_empty_after_surge_s": None,
}


def _phase_waits(turns, walls: list[datetime]) -> list[dict]:
    """Wait (submitted → started) p50/p99 of the turns submitted in each phase."""
    waits: list[list[float]] = [[] for _ in walls]
    for created, started_at in turns.values_list("created_at", "started_at"):
        if started_at is None:
            continue
        phase = (
            max(i for i, wall in enumerate(walls) if wall <= created) if created >= walls[0] else 0
        )
        waits[phase].append((started_at - created).total_seconds())
    return [
        {
            "p50_s": round(percentile(w, 50), 2) if w else None,
            "p99_s": round(percentile(w, 99), 2) if w else None,
        }
        for w in waits
    ]


def run(bench: Bench) -> Result:
    o = bench.options
    latency = o.pick(o.latency, 1.0, 0.5)
    seconds = o.pick(None, 60.0, 3.0)
    # A new worker takes 3-5 s to start on two busy cores: the quick surge must outlast
    # that, or its backlog is gone before the first new worker could consume anything.
    surge_seconds = o.pick(None, 60.0, 7.0)
    sessions = o.pick(o.load_sessions, 200, 40)
    phases = [(4.0, seconds), (40.0, surge_seconds), (4.0, seconds)]
    window = o.pick(None, 10, 3)
    env = {
        "CAPACITY_INTERVAL_SECONDS": "1",
        "CAPACITY_WORKER_CONCURRENCY": str(THREADS),
        "CAPACITY_MIN_WORKERS": "1",
        "CAPACITY_MAX_WORKERS": str(MAX_WORKERS),
        "CAPACITY_MAX_WAIT_SECONDS": "2",
        "CAPACITY_SCALE_DOWN_WINDOW_SECONDS": str(window),
        "CAPACITY_ARRIVAL_WINDOW_SECONDS": str(window),
        "CAPACITY_DEFAULT_SERVICE_SECONDS": str(latency),
        "WORKER_HEARTBEAT_SECONDS": "1",
    }
    result = Result(
        "elastic",
        f"{sessions} sessions, model latency {latency} s; 4/s for {seconds:g} s, 40/s for "
        f"{surge_seconds:g} s, 4/s for {seconds:g} s; `workers --min 1 --max {MAX_WORKERS}` "
        f"x {THREADS} threads vs static pools of "
        + (
            f"{MAX_WORKERS} workers (run; quick skips the pool of 1)"
            if o.quick
            else f"1 and {MAX_WORKERS} workers (each run)"
        ),
        config={
            "sessions": sessions,
            "model_latency_s": latency,
            "phases": phases,
            "max_workers": MAX_WORKERS,
            "threads": THREADS,
            "scale_down_window_s": window,
        },
    )
    bench.platform.start_model(latency)
    bench.platform.start_beat(env=env)
    bench.platform.wait_for_beat()
    pools = [("auto", None), ("static", 1), ("static6", MAX_WORKERS)]
    if o.quick:  # the static pool of one is a reference only; the goals need the others
        pools.remove(("static", 1))
    runs = {"static": NOT_RUN}
    try:
        for name, static_workers in pools:
            tenant = bench.tenant(f"elastic-{name}")
            jobs, _ = bench.idle_sessions([(tenant, f"s{i}") for i in range(sessions)])
            runs[name] = _one_run(
                bench, tenant, jobs, phases, static_workers=static_workers, env=env
            )
            bench.retire([tenant])
    finally:
        bench.platform.stop_beat()

    auto, static, static6 = runs["auto"], runs["static"], runs["static6"]
    static_max = static6["worker_seconds"]
    result.figures = {
        "lost": auto["lost"],
        "duplicated": auto["duplicated"],
        "wait_p50_s": [w["p50_s"] for w in auto["phase_waits"]],
        "wait_p99_s": [w["p99_s"] for w in auto["phase_waits"]],
        "static_wait_p50_s": [w["p50_s"] for w in static["phase_waits"]],
        "static_wait_p99_s": [w["p99_s"] for w in static["phase_waits"]],
        "first_new_worker_s": auto["first_new_worker_s"],
        "backlog_empty_after_surge_s": auto["backlog_empty_after_surge_s"],
        "static_backlog_empty_after_surge_s": static["backlog_empty_after_surge_s"],
        "peak_workers": auto["peak_workers"],
        "worker_seconds": auto["worker_seconds"],
        "standby_seconds": auto["standby_seconds"],
        "static_max_worker_seconds": round(static_max, 1),
        "static_max_duration_s": static6["duration_s"],
        "worker_seconds_ratio": ratio(auto["worker_seconds"], static_max),
        "static_max_wait_p99_s": [w["p99_s"] for w in static6["phase_waits"]],
        "static_lost": static["lost"],
        "static_duplicated": static["duplicated"],
        "static_max_lost": static6["lost"],
        "static_max_duplicated": static6["duplicated"],
    }
    f = result.figures
    row = result.row(
        "lost / duplicated",
        f"{f['lost']} / {f['duplicated']}",
        f"static 1: {num(f['static_lost'])} / {num(f['static_duplicated'])}, "
        f"6: {f['static_max_lost']} / {f['static_max_duplicated']}",
    )
    result.goal(row, "0 / 0", f["lost"] == 0 and f["duplicated"] == 0)
    for index, name in enumerate(("before", "surge", "after")):
        p99 = f["wait_p99_s"][index]
        row = result.row(
            f"wait p50 / p99, {name}",
            f"{num(f['wait_p50_s'][index], 2)} / {num(p99, 2)} s",
            f"static 1: {num(f['static_wait_p50_s'][index], 2)} / "
            f"{num(f['static_wait_p99_s'][index], 2)} s, 6: p99 "
            f"{num(f['static_max_wait_p99_s'][index], 2)} s",
        )
        result.goal(row, "p99 ≤ 3 s", p99 is not None and p99 <= 3)
    row = result.row(
        "first new worker consuming",
        f"{num(f['first_new_worker_s'], 2)} s",
        "after the step to 40/s",
    )
    first = f["first_new_worker_s"]
    result.goal(row, "≤ 1 s", first is not None and first <= 1)
    row = result.row(
        "backlog empty after the surge",
        f"{num(f['backlog_empty_after_surge_s'], 2)} s",
        f"static {num(f['static_backlog_empty_after_surge_s'], 1)} s",
    )
    empty = f["backlog_empty_after_surge_s"]
    result.goal(row, "≤ 10 s", empty is not None and empty <= 10)
    row = result.row(
        "worker-seconds, standby included",
        f"{num(f['worker_seconds'])} (standby {num(f['standby_seconds'])})",
        f"static {MAX_WORKERS} workers {num(f['static_max_worker_seconds'])} (run, "
        f"{num(f['static_max_duration_s'])} s)",
        f["worker_seconds_ratio"],
    )
    result.goal(
        row, "≤ 0.60", f["worker_seconds_ratio"] is not None and f["worker_seconds_ratio"] <= 0.6
    )
    result.row("peak workers", str(f["peak_workers"]), f"max {MAX_WORKERS}")
    for name, figures in (("elastic", auto), ("static 1", static), ("static 6", static6)):
        if figures["unfinished"]:
            result.notes.append(f"{name}: unfinished turns {figures['unfinished']}")
        if figures["not_accepted"]:
            result.notes.append(f"{name}: {figures['not_accepted']} submissions refused")
    return result
