"""tenants: the overhead load spread over T tenants, one session each, against the same
load on one tenant with T sessions.

Each tenant has its own queue and a worker polls all of its queues in one BRPOP, whose
cost grows with the number of keys: that is what this measures. Workers are restarted
between the two halves, since a worker subscribes to the tenants that exist when it starts.
"""

from __future__ import annotations

from ..context import Bench, per_unit_ms
from ..load import Outcome, turn_jobs
from ..measure import percentile
from ..report import Result, ms, num, ratio


def _load(bench: Bench, tenants, jobs, *, turns, lanes, workers, threads, label: str):
    """Start workers, send the load, count what it left unfinished, stop the workers."""
    bench.platform.start_workers(workers, threads)
    try:
        bench.warm_up(jobs[: lanes * 2], lanes)
        meter = bench.cpu_meter().start()
        outcome = bench.send(turn_jobs(jobs, turns), lanes=lanes, description=label)
        cpu = meter.stop()
        return outcome, cpu, bench.unfinished(tenants)
    finally:
        bench.platform.stop_workers()


def run(bench: Bench) -> Result:
    o = bench.options
    count = o.pick(o.tenants, 1000, 10)
    turns = o.pick(o.turns, 2000, 40)
    lanes = min(o.pick(o.in_flight, 100, 5), count)
    workers = o.pick(o.workers, 1, 1)
    threads = o.pick(o.worker_concurrency, 8, 8)
    result = Result(
        "tenants",
        f"{turns} turns over {count} tenants x 1 session vs 1 tenant x {count} sessions, "
        f"{lanes} in flight, model latency 0; {workers} worker x {threads} threads",
        config={
            "tenants": count,
            "turns": turns,
            "in_flight": lanes,
            "workers": workers,
            "worker_concurrency": threads,
            "web_workers": o.web_workers,
            "model_latency_s": 0.0,
        },
    )
    bench.platform.start_model(0.0)
    load = {"turns": turns, "lanes": lanes, "workers": workers, "threads": threads}

    one = bench.tenant("tenants-one")
    jobs, _ = bench.idle_sessions([(one, f"s{i}") for i in range(count)])
    single, single_cpu, unfinished = _load(bench, [one], jobs, **load, label="turns, 1 tenant")
    bench.retire([one])

    many = bench.tenants("tenants", count)
    jobs, _ = bench.idle_sessions([(tenant, "main") for tenant in many])
    spread, spread_cpu, left = _load(bench, many, jobs, **load, label=f"turns, {count} tenants")
    for status, count_left in left.items():
        unfinished[status] = unfinished.get(status, 0) + count_left
    bench.retire(many)

    def figures(outcome: Outcome, cpu: dict[str, float], prefix: str) -> dict:
        return {
            f"{prefix}_turns_per_s": round(outcome.rate, 1),
            f"{prefix}_latency_p50_ms": ms(percentile(outcome.latencies, 50)),
            f"{prefix}_latency_p99_ms": ms(percentile(outcome.latencies, 99)),
            f"{prefix}_cpu_ms_per_turn": per_unit_ms(cpu, outcome.completed),
            f"{prefix}_failed": outcome.failed,
        }

    result.figures = {
        **figures(single, single_cpu, "one_tenant"),
        **figures(spread, spread_cpu, "many_tenants"),
        "ratio_to_one_tenant": ratio(spread.rate, single.rate),
        "queues_per_worker": count + 1,
        "unfinished": unfinished,
    }
    f = result.figures
    row = result.row(
        f"turns/s, {count} tenants",
        num(f["many_tenants_turns_per_s"]),
        f"1 tenant {num(f['one_tenant_turns_per_s'])}/s",
        f["ratio_to_one_tenant"],
    )
    result.goal(
        row, "≥ 0.80", f["ratio_to_one_tenant"] is not None and f["ratio_to_one_tenant"] >= 0.8
    )
    result.row(
        "latency p50 / p99",
        f"{num(f['many_tenants_latency_p50_ms'])} / {num(f['many_tenants_latency_p99_ms'])} ms",
        f"1 tenant {num(f['one_tenant_latency_p50_ms'])} / "
        f"{num(f['one_tenant_latency_p99_ms'])} ms",
    )
    many_worker = f["many_tenants_cpu_ms_per_turn"].get("workers")
    one_worker = f["one_tenant_cpu_ms_per_turn"].get("workers")
    result.row(
        "worker CPU ms per turn",
        num(many_worker, 2),
        f"1 tenant {num(one_worker, 2)}",
        ratio(many_worker, one_worker),
    )
    result.row(
        "web CPU ms per turn",
        num(f["many_tenants_cpu_ms_per_turn"].get("web"), 2),
        f"1 tenant {num(f['one_tenant_cpu_ms_per_turn'].get('web'), 2)}",
    )
    result.note_problems([single, spread], unfinished)
    result.notes.append("single run of each load (1 tenant, many tenants): no range")
    return result
