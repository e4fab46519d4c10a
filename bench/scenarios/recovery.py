"""recovery: a worker killed with SIGKILL while its turns run; nothing may be lost or
answered twice.

Turns are submitted without waiting; halfway through, one of the two workers is killed
(its whole process group: no shutdown handler runs). The leases of its turns expire, the
reaper (celery-beat, every second here) re-dispatches them and the other worker resumes
each from its last saved step. The same run without the kill is the floor.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime

from django.db.models import Count, Max, Q
from django.utils import timezone

from agents.models import FINAL_STATUSES, MessageRole, Turn, TurnStatus

from ..context import Bench, BenchTenant
from ..load import Job, Outcome, turn_jobs
from ..platform import threads_for
from ..report import Result, num, ratio

# Short supervision so a dead worker's turns come back within seconds (the settings'
# defaults are for production: a 30 s lease, a 5 s reaper).
SUPERVISION = {
    "TURN_LEASE_SECONDS": "5",
    "TURN_LEASE_RENEW_SECONDS": "1.5",
    "TURN_LEASE_GRACE_SECONDS": "2",
    "TURN_REDISPATCH_AFTER_SECONDS": "5",
    "REAPER_INTERVAL_SECONDS": "1",
}
TURNS_PER_SESSION = 5


def _turns(tenant: BenchTenant, since: datetime):
    return Turn.objects.filter(tenant_id=tenant.id, created_at__gte=since)


def _finished(tenant: BenchTenant, since: datetime) -> int:
    return _turns(tenant, since).filter(status__in=FINAL_STATUSES).count()


def _one_run(
    bench: Bench, tenant: BenchTenant, jobs: list[Job], *, kill: bool, deadline_s: float
) -> dict:
    """Submit every turn, optionally kill worker 1 at half, wait for all to end."""
    total = len(jobs)
    since = timezone.now()
    label = "with a worker killed" if kill else "no kill"
    # Submit in a thread, so the kill can come while turns are still being submitted.
    submission: list[Outcome] = []
    submitter = threading.Thread(
        target=lambda: submission.append(
            bench.send(jobs, lanes=min(50, total), description=f"submit, {label}", wait=None)
        )
    )
    submitter.start()
    killed_at = None
    deadline = time.monotonic() + deadline_s
    with bench.bar(f"finished, {label}", total) as bar:
        while True:
            done = _finished(tenant, since)
            bar.update(done - bar.n)
            if kill and killed_at is None and done >= total // 2:
                bench.platform.workers[0].kill()
                killed_at = done
                bench.say(f"  SIGKILL worker 1 with {done} of {total} turns finished")
            if not submitter.is_alive():
                if not submission:
                    raise RuntimeError("submitting the turns failed; see above")
                if done >= submission[0].completed:
                    break
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
    submitter.join()
    submitted = submission[0]
    if kill and killed_at is None:  # every turn ended before half was seen
        bench.say("  the turns finished before the kill; no recovery was measured")

    # One user message per turn (mode `enqueue`): its answers are the turn's.
    turns = _turns(tenant, since).annotate(
        answers=Count("messages", filter=Q(messages__role=MessageRole.ASSISTANT))
    )
    rows = _turns(tenant, since)
    last_finished = rows.aggregate(last=Max("finished_at"))["last"]
    return {
        "submitted": submitted.completed,
        "not_accepted": submitted.failed,
        "lost": total - turns.filter(status=TurnStatus.SUCCEEDED, answers__gte=1).count(),
        "duplicated": turns.filter(answers__gt=1).count(),
        "rerun": rows.filter(attempts__gt=1).count(),
        "by_status": dict(rows.values_list("status").annotate(n=Count("id"))),
        "finish_s": round((last_finished - since).total_seconds(), 2) if last_finished else None,
        "killed_after": killed_at,
        "failures": dict(submitted.failures),
    }


def run(bench: Bench) -> Result:
    o = bench.options
    total = o.pick(o.turns, 500, 40)
    latency = o.pick(o.latency, 1.0, 0.5)
    # Quick: fewer turns per session, so the run ends soon after the re-dispatch.
    sessions = max(1, total // o.pick(None, TURNS_PER_SESSION, 2))
    workers = max(2, o.pick(o.workers, 2, 2))
    threads = o.pick(o.worker_concurrency, threads_for(sessions, workers), 10)
    result = Result(
        "recovery",
        f"{total} turns over {sessions} sessions, model latency {latency} s; {workers} workers "
        f"x {threads} threads, 1 SIGKILLed midway; beat reaper every 1 s, lease 5 s",
        config={
            "turns": total,
            "sessions": sessions,
            "model_latency_s": latency,
            "workers": workers,
            "worker_concurrency": threads,
            "supervision": SUPERVISION,
        },
    )
    bench.platform.start_model(latency)
    tenant = bench.tenant("recovery")
    calm, _ = bench.idle_sessions([(tenant, f"calm{i}") for i in range(sessions)])
    stormy, _ = bench.idle_sessions([(tenant, f"kill{i}") for i in range(sessions)])
    # Generous: the re-dispatch of a dead worker's turns takes lease + grace + reaper.
    deadline = 60 + 3 * total * latency / (workers * threads)
    bench.platform.start_beat(env=SUPERVISION)
    bench.platform.start_workers(workers, threads, env=SUPERVISION)
    bench.platform.wait_for_beat()
    try:
        baseline = _one_run(bench, tenant, turn_jobs(calm, total), kill=False, deadline_s=deadline)
        killed = _one_run(bench, tenant, turn_jobs(stormy, total), kill=True, deadline_s=deadline)
    finally:
        bench.platform.stop_beat()
        bench.platform.stop_workers()
        bench.retire([tenant])

    result.figures = {
        "turns": total,
        "lost": killed["lost"],
        "duplicated": killed["duplicated"],
        "rerun_turns": killed["rerun"],
        # 0 when every turn ended before the kill came: then nothing was recovered.
        "workers_killed": 0 if killed["killed_after"] is None else 1,
        "killed_after_finished": killed["killed_after"],
        "finish_s": killed["finish_s"],
        "finish_no_kill_s": baseline["finish_s"],
        "finish_ratio": ratio(killed["finish_s"], baseline["finish_s"]),
        "lost_no_kill": baseline["lost"],
        "duplicated_no_kill": baseline["duplicated"],
        "statuses": killed["by_status"],
        "statuses_no_kill": baseline["by_status"],
    }
    f = result.figures
    row = result.row("lost", str(f["lost"]), f"no kill: {f['lost_no_kill']}")
    result.goal(row, "0", f["lost"] == 0)
    row = result.row("duplicated", str(f["duplicated"]), f"no kill: {f['duplicated_no_kill']}")
    result.goal(row, "0", f["duplicated"] == 0)
    result.row(
        "time to finish",
        f"{num(f['finish_s'])} s",
        f"no kill {num(f['finish_no_kill_s'])} s",
        f["finish_ratio"],
    )
    result.row(
        "turns re-run after the kill",
        str(f["rerun_turns"]),
        f"killed with {f['killed_after_finished']} of {total} finished",
    )
    for name, run_figures in (("no kill", baseline), ("kill", killed)):
        if run_figures["failures"]:
            result.notes.append(f"{name}: submissions refused: {run_figures['failures']}")
        if run_figures["lost"]:
            result.notes.append(
                f"{name}: turns by status at the deadline: {run_figures['by_status']}"
            )
    if killed["killed_after"] is None:
        result.notes.append("the turns finished before the kill: raise --turns or --latency")
    result.notes.append("single run of each (with and without the kill): no range")
    return result
