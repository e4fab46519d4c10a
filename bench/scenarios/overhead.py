"""overhead: what the platform adds to a turn when the model answers at once.

Turns through the API with `wait`, many in flight, against two floors measured in the same
run on the same web server, workers, queue and client: the pipeline floor (bench/floor.py:
the same request, one transaction, one task that writes one row and publishes one event,
the view waiting on it), which the goals compare with, and bare Celery no-op tasks
(`beamclaw.ping`, send → result), the broker's own floor. Each loaded figure is run
`--repeat` times (3; quick 1), interleaved, and reported as median and range; then one
turn at a time, for the overhead a lone user sees.
"""

from __future__ import annotations

from agents.models import Turn
from beamclaw.celery import ping

from ..context import Bench, Repeats, summary
from ..load import Job, Outcome, Progress, TaskResults, run_lanes, turn_jobs
from ..measure import percentile
from ..report import Result, cpu_rows, ms, num, ratio, server_cpu, spread


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


def floor_path(slug: str, latency: float = 0.0) -> str:
    """The pipeline floor's URL (bench/floor.py) for Api's `messages_path`."""
    path = f"/bench/floor/{slug}/sessions/{{key}}/messages"
    return f"{path}?latency={latency}" if latency else path


def run(bench: Bench) -> Result:
    o = bench.options
    turns = o.pick(o.turns, 2000, 40)
    sessions = o.pick(o.load_sessions, 200, 10)
    lanes = min(o.pick(o.in_flight, 100, 5), sessions)
    alone = max(10, min(200, turns // 10))
    workers = o.pick(o.workers, 1, 1)
    threads = o.pick(o.worker_concurrency, 8, 8)
    repeats = max(1, o.pick(o.repeat, 3, 1))
    result = Result(
        "overhead",
        f"{turns} turns over {sessions} sessions, {lanes} in flight, model latency 0, "
        f"{repeats} run(s) of each loaded figure; {workers} worker x {threads} threads, "
        f"{o.web_workers} web workers",
        config={
            "turns": turns,
            "sessions": sessions,
            "in_flight": lanes,
            "unloaded_turns": alone,
            "workers": workers,
            "worker_concurrency": threads,
            "web_workers": o.web_workers,
            "model_latency_s": 0.0,
            "repeat": repeats,
        },
    )
    bench.platform.start_model(0.0)
    tenant = bench.tenant("overhead")
    floor = floor_path(tenant.slug)
    bench.platform.start_workers(workers, threads)
    loaded, floors, noops = Repeats(), Repeats(), Repeats()
    try:
        jobs = [tenant.job(f"s{i}") for i in range(sessions)]
        floor_jobs = [Job(tenant.api_key, f"floor-s{i}") for i in range(sessions)]
        bench.warm_up(jobs, lanes)  # also creates the sessions
        bench.warm_up(floor_jobs, lanes, messages_path=floor)
        first = bench.last_turn_id()
        one = bench.send(turn_jobs(jobs, alone), lanes=1, description="one turn at a time")
        timings = server_timings(tenant.id, first)
        floor_one = bench.send(
            turn_jobs(floor_jobs, alone),
            lanes=1,
            description="floor: one at a time",
            messages_path=floor,
        )
        noop_task_alone = noop_tasks(bench, tenant.slug, alone, 1, "no-op tasks one at a time")
        first = bench.last_turn_id()
        # Interleaved, so a machine that drifts during the run drifts for all three.
        for index in range(1, repeats + 1):
            run_label = f" ({index}/{repeats})" if repeats > 1 else ""
            meter = bench.cpu_meter().start()
            outcome = bench.send(
                turn_jobs(jobs, turns), lanes=lanes, description="turns" + run_label
            )
            loaded.add(outcome, meter.stop())
            meter = bench.cpu_meter().start()
            outcome = bench.send(
                turn_jobs(floor_jobs, turns),
                lanes=lanes,
                description="pipeline floor" + run_label,
                messages_path=floor,
            )
            floors.add(outcome, meter.stop())
            meter = bench.cpu_meter().start()
            outcome = noop_tasks(bench, tenant.slug, turns, lanes, "no-op tasks" + run_label)
            noops.add(outcome, meter.stop())
        loaded_timings = server_timings(tenant.id, first)
        unfinished = bench.unfinished([tenant])
    finally:
        bench.platform.stop_workers()
        bench.retire([tenant])

    p50, p99 = percentile(one.latencies, 50), percentile(one.latencies, 99)
    floor_p50 = percentile(floor_one.latencies, 50)
    cpu_turn, cpu_floor = loaded.cpu_ms(), floors.cpu_ms()
    result.figures = {
        "turns_per_s": loaded.median_rate,
        "turns_per_s_runs": loaded.rates,
        "floor_per_s": floors.median_rate,
        "floor_per_s_runs": floors.rates,
        "ratio_to_floor": ratio(loaded.median_rate, floors.median_rate),
        "noop_per_s": noops.median_rate,
        "noop_per_s_runs": noops.rates,
        "ratio_to_noop": ratio(loaded.median_rate, noops.median_rate),
        "latency_p50_ms": ms(percentile(loaded.latencies, 50)),
        "latency_p99_ms": ms(percentile(loaded.latencies, 99)),
        "floor_latency_p50_ms": ms(percentile(floors.latencies, 50)),
        "floor_latency_p99_ms": ms(percentile(floors.latencies, 99)),
        "noop_latency_p50_ms": ms(percentile(noops.latencies, 50)),
        "noop_latency_p99_ms": ms(percentile(noops.latencies, 99)),
        "overhead_p50_ms": ms(p50),
        "overhead_p99_ms": ms(p99),
        "floor_alone_p50_ms": ms(floor_p50),
        "floor_alone_p99_ms": ms(percentile(floor_one.latencies, 99)),
        "noop_alone_p50_ms": ms(percentile(noop_task_alone.latencies, 50)),
        "noop_alone_p99_ms": ms(percentile(noop_task_alone.latencies, 99)),
        **{f"alone_server_{k}": v for k, v in timings.items()},
        **{f"loaded_server_{k}": v for k, v in loaded_timings.items()},
        "cpu_ms_per_turn": cpu_turn,
        "cpu_ms_per_floor_turn": cpu_floor,
        "cpu_ms_per_noop": noops.cpu_ms(),
        "server_cpu_ms_per_turn": server_cpu(cpu_turn),
        "server_cpu_ms_per_floor_turn": server_cpu(cpu_floor),
        "server_cpu_ratio_to_floor": ratio(server_cpu(cpu_turn), server_cpu(cpu_floor)),
        "client_cpu_ms_per_turn": cpu_turn.get("client"),
        "completed": loaded.completed,
        "failed": loaded.failed + one.failed,
        "floor_failed": floors.failed + floor_one.failed,
        "noop_failed": noops.failed + noop_task_alone.failed,
        "unfinished": unfinished,
    }
    f = result.figures
    row = result.row(
        "turns/s (loaded)",
        spread(f["turns_per_s_runs"]),
        f"pipeline floor {spread(f['floor_per_s_runs'])}",
        f["ratio_to_floor"],
    )
    result.goal(
        row, "≥ 0.70 (medians)", None if f["ratio_to_floor"] is None else f["ratio_to_floor"] >= 0.7
    )
    result.row("", "", f"no-op tasks {spread(f['noop_per_s_runs'])}", f["ratio_to_noop"])
    result.row(
        "latency p50 / p99 (loaded)",
        f"{num(f['latency_p50_ms'])} / {num(f['latency_p99_ms'])} ms",
        f"floor {num(f['floor_latency_p50_ms'])} / {num(f['floor_latency_p99_ms'])} ms",
    )
    result.row(
        "",
        "",
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
        f"floor {num(f['floor_alone_p50_ms'])}, no-op {num(f['noop_alone_p50_ms'])} ms",
        ratio(f["overhead_p50_ms"], f["floor_alone_p50_ms"]),
    )
    ratio_p50 = ratio(p50, floor_p50)
    result.goal(row, "≤ 2.0x floor", None if ratio_p50 is None else ratio_p50 <= 2.0)
    row = result.row(
        "overhead p99 (one at a time)",
        f"{num(f['overhead_p99_ms'])} ms",
        f"floor {num(f['floor_alone_p99_ms'])}, no-op {num(f['noop_alone_p99_ms'])} ms",
    )
    result.goal(row, "≤ 25 ms", None if p99 is None else p99 * 1000 <= 25)
    result.row(
        "  of which queued / running",
        f"{num(f['alone_server_queue_p50_ms'])} / {num(f['alone_server_run_p50_ms'])} ms",
        "p50, from the turn rows",
    )
    row = cpu_rows(result, "turn (loaded)", cpu_turn)
    row.against += f"; floor {f['server_cpu_ms_per_floor_turn']:.2f}"
    row.ratio = f["server_cpu_ratio_to_floor"]
    cpu_ratio = f["server_cpu_ratio_to_floor"]
    result.goal(row, "≤ 1.6x floor", None if cpu_ratio is None else cpu_ratio <= 1.6)
    cpu_rows(result, "floor turn", cpu_floor)
    cpu_rows(result, "no-op task", f["cpu_ms_per_noop"])
    result.row("completed / failed", f"{f['completed']} / {f['failed']}", "loaded / all")
    result.note_problems([*loaded.outcomes, one], unfinished)
    if f["floor_failed"]:
        result.notes.append(f"{f['floor_failed']} pipeline-floor requests failed")
    if f["noop_failed"]:
        result.notes.append(f"{f['noop_failed']} no-op tasks got no result")
    if repeats == 1:
        result.notes.append("throughput from a single run of each (--repeat 1): no range")
    return result
