"""overhead: what the platform adds to a turn when the model answers at once.

Turns through the API with `wait`, many in flight, against the same number of bare
Celery no-op tasks (`beamclaw.ping`, send → result) on the same broker, queue and
workers; then one turn at a time, for the overhead a lone user sees.
"""

from __future__ import annotations

from agents.models import Turn
from beamclaw.celery import ping

from ..context import Bench, per_unit_ms, summary
from ..load import Outcome, Progress, TaskResults, run_lanes, turn_jobs
from ..measure import percentile
from ..report import Result, ms, num, platform_cpu, ratio


def noop_tasks(bench: Bench, slug: str, count: int, lanes: int, description: str) -> Outcome:
    """`count` bare Celery tasks to the tenant's queue, `lanes` in flight, send → result."""

    def send(task_id: str) -> None:
        ping.apply_async(kwargs={"tenant": slug}, task_id=task_id)

    async def go() -> Outcome:
        async with TaskResults(bench.redis_url) as results:
            with bench.bar(description, count, unit="task") as bar:
                work = [list(range(i, count, lanes)) for i in range(lanes)]
                return await run_lanes(work, lambda _: results.round_trip(send), Progress(bar))

    outcome = bench.run(go())
    bench.say(f"  {description}: {summary(outcome)}")
    return outcome


def server_timings(tenant_id: int, after_id: int) -> dict[str, float | None]:
    """From the turn rows: queue wait (created → started) and run time (started →
    finished), p50 and p99; what the client saw beyond them was spent in the web tier."""
    rows = Turn.objects.filter(tenant_id=tenant_id, pk__gt=after_id, status="succeeded")
    rows = list(rows.values_list("created_at", "started_at", "finished_at"))
    queued = [(s - c).total_seconds() for c, s, f in rows]
    running = [(f - s).total_seconds() for c, s, f in rows]
    return {
        "queue_p50_ms": ms(percentile(queued, 50)),
        "queue_p99_ms": ms(percentile(queued, 99)),
        "run_p50_ms": ms(percentile(running, 50)),
        "run_p99_ms": ms(percentile(running, 99)),
    }


def run(bench: Bench) -> Result:
    o = bench.options
    turns = o.pick(o.turns, 2000, 40)
    sessions = o.pick(o.load_sessions, 200, 10)
    lanes = min(o.pick(o.in_flight, 100, 5), sessions)
    alone = max(10, min(200, turns // 10))
    workers = o.pick(o.workers, 1, 1)
    threads = o.pick(o.worker_concurrency, 8, 8)
    result = Result(
        "overhead",
        f"{turns} turns over {sessions} sessions, {lanes} in flight, model latency 0; "
        f"{workers} worker x {threads} threads, {o.web_workers} web workers",
        config={
            "turns": turns,
            "sessions": sessions,
            "in_flight": lanes,
            "unloaded_turns": alone,
            "workers": workers,
            "worker_concurrency": threads,
            "web_workers": o.web_workers,
            "model_latency_s": 0.0,
        },
    )
    bench.platform.start_model(0.0)
    tenant = bench.tenant("overhead")
    bench.platform.start_workers(workers, threads)
    try:
        jobs = [tenant.job(f"s{i}") for i in range(sessions)]
        bench.warm_up(jobs, lanes)  # also creates the sessions
        first = bench.last_turn_id()
        one = bench.send(turn_jobs(jobs, alone), lanes=1, description="one turn at a time")
        timings = server_timings(tenant.id, first)
        first = bench.last_turn_id()
        meter = bench.cpu_meter().start()
        loaded = bench.send(turn_jobs(jobs, turns), lanes=lanes, description="turns")
        cpu = meter.stop()
        loaded_timings = server_timings(tenant.id, first)
        noop_task_alone = noop_tasks(bench, tenant.slug, alone, 1, "no-op tasks one at a time")
        meter = bench.cpu_meter().start()
        noop = noop_tasks(bench, tenant.slug, turns, lanes, "no-op tasks")
        noop_cpu = meter.stop()
        unfinished = bench.unfinished([tenant])
    finally:
        bench.platform.stop_workers()
        bench.retire([tenant])

    p50, p99 = percentile(one.latencies, 50), percentile(one.latencies, 99)
    result.figures = {
        "turns_per_s": round(loaded.rate, 1),
        "noop_per_s": round(noop.rate, 1),
        "ratio_to_noop": ratio(loaded.rate, noop.rate),
        "latency_p50_ms": ms(percentile(loaded.latencies, 50)),
        "latency_p99_ms": ms(percentile(loaded.latencies, 99)),
        "noop_latency_p50_ms": ms(percentile(noop.latencies, 50)),
        "noop_latency_p99_ms": ms(percentile(noop.latencies, 99)),
        "overhead_p50_ms": ms(p50),
        "overhead_p99_ms": ms(p99),
        "noop_alone_p50_ms": ms(percentile(noop_task_alone.latencies, 50)),
        "noop_alone_p99_ms": ms(percentile(noop_task_alone.latencies, 99)),
        **{f"alone_server_{k}": v for k, v in timings.items()},
        **{f"loaded_server_{k}": v for k, v in loaded_timings.items()},
        "cpu_ms_per_turn": per_unit_ms(cpu, loaded.completed),
        "cpu_ms_per_noop": per_unit_ms(noop_cpu, noop.completed),
        "client_cpu_ms_per_turn": round(loaded.client_cpu * 1000 / max(1, loaded.completed), 2),
        "completed": loaded.completed,
        "failed": loaded.failed + one.failed,
        "noop_failed": noop.failed + noop_task_alone.failed,
        "unfinished": unfinished,
    }
    f = result.figures
    row = result.row(
        "turns/s (loaded)",
        num(f["turns_per_s"]),
        f"no-op tasks {num(f['noop_per_s'])}/s",
        f["ratio_to_noop"],
    )
    result.goal(row, "≥ 0.50", None if f["ratio_to_noop"] is None else f["ratio_to_noop"] >= 0.5)
    result.row(
        "latency p50 / p99 (loaded)",
        f"{num(f['latency_p50_ms'])} / {num(f['latency_p99_ms'])} ms",
        f"no-op {num(f['noop_latency_p50_ms'])} / {num(f['noop_latency_p99_ms'])} ms",
    )
    result.row(
        "  of which queued p50 / p99",
        f"{num(f['loaded_server_queue_p50_ms'])} / {num(f['loaded_server_queue_p99_ms'])} ms",
        "from the turn rows",
    )
    result.row(
        "  of which running p50 / p99",
        f"{num(f['loaded_server_run_p50_ms'])} / {num(f['loaded_server_run_p99_ms'])} ms",
        "from the turn rows",
    )
    row = result.row(
        "overhead p50 (one at a time)",
        f"{num(f['overhead_p50_ms'])} ms",
        f"no-op {num(f['noop_alone_p50_ms'])} ms",
        ratio(f["overhead_p50_ms"], f["noop_alone_p50_ms"]),
    )
    result.goal(row, "≤ 15 ms", None if p50 is None else p50 * 1000 <= 15)
    result.row(
        "overhead p99 (one at a time)",
        f"{num(f['overhead_p99_ms'])} ms",
        f"no-op {num(f['noop_alone_p99_ms'])} ms",
    )
    result.row(
        "  of which queued / running",
        f"{num(f['alone_server_queue_p50_ms'])} / {num(f['alone_server_run_p50_ms'])} ms",
        "p50, from the turn rows",
    )
    breakdown = ", ".join(f"{k} {v:.1f}" for k, v in f["cpu_ms_per_turn"].items() if v >= 0.05)
    result.row("CPU ms per turn (loaded)", f"{platform_cpu(f['cpu_ms_per_turn']):.1f}", breakdown)
    breakdown = ", ".join(f"{k} {v:.1f}" for k, v in f["cpu_ms_per_noop"].items() if v >= 0.05)
    result.row("CPU ms per no-op task", f"{platform_cpu(f['cpu_ms_per_noop']):.1f}", breakdown)
    result.row("completed / failed", f"{f['completed']} / {f['failed']}", "loaded / all")
    result.note_problems([loaded, one], unfinished)
    if f["noop_failed"]:
        result.notes.append(f"{f['noop_failed']} no-op tasks got no result")
    return result
