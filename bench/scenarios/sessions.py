"""sessions: the overhead load on a few sessions of a tenant holding a million idle ones,
against the same load on a tenant holding a thousand.

Idle sessions must cost nothing but disk: no slower turns, no bigger workers. Each half
gets freshly started workers, so their memory compares; each runs its load `--repeat`
times (3; quick 1) and the goal compares the medians.
"""

from __future__ import annotations

from ..context import Bench, BenchTenant, Repeats
from ..load import turn_jobs
from ..measure import percentile
from ..report import Result, ms, num, ratio, spread

MB = 1024 * 1024
SMALL = 1000


def _half(bench: Bench, tenant: BenchTenant, size: int, o: dict) -> dict:
    bench.say(f"  inserting {size:,} idle sessions")
    jobs, seconds = bench.idle_sessions([(tenant, f"idle-{i:07d}") for i in range(size)])
    step = max(1, size // o["sessions"])
    loaded = jobs[::step][: o["sessions"]]  # spread over the key space
    bench.platform.start_workers(o["workers"], o["threads"])
    try:
        bench.warm_up(loaded, o["lanes"])
        runs = Repeats()
        with bench.worker_memory() as memory:
            for index in range(1, o["repeat"] + 1):
                meter = bench.cpu_meter().start()
                outcome = bench.send(
                    turn_jobs(loaded, o["turns"]),
                    lanes=o["lanes"],
                    description=f"turns, {size:,} sessions ({index}/{o['repeat']})",
                )
                runs.add(outcome, meter.stop())
        unfinished = bench.unfinished([tenant])
    finally:
        bench.platform.stop_workers()
    return {
        "outcomes": runs.outcomes,
        "unfinished": unfinished,
        "insert_s": round(seconds, 2),
        "turns_per_s": runs.median_rate,
        "turns_per_s_runs": runs.rates,
        "latency_p50_ms": ms(percentile(runs.latencies, 50)),
        "latency_p99_ms": ms(percentile(runs.latencies, 99)),
        "worker_rss_before_mb": round(memory.first / MB, 1),
        "worker_rss_peak_mb": round(memory.peak / MB, 1),
        "worker_rss_after_mb": round(memory.last / MB, 1),
        "cpu_ms_per_turn": runs.cpu_ms(),
    }


def run(bench: Bench) -> Result:
    o = bench.options
    idle = o.pick(o.sessions, 1_000_000, 10_000)
    sizes = {
        "turns": o.pick(o.turns, 2000, 40),
        "sessions": o.pick(o.load_sessions, 200, 10),
        "workers": o.pick(o.workers, 1, 1),
        "threads": o.pick(o.worker_concurrency, 8, 8),
        "repeat": max(1, o.pick(o.repeat, 3, 1)),
    }
    sizes["lanes"] = min(o.pick(o.in_flight, 100, 5), sizes["sessions"])
    result = Result(
        "sessions",
        f"{sizes['turns']} turns over {sizes['sessions']} of {idle:,} idle sessions vs of "
        f"{SMALL:,}, {sizes['lanes']} in flight, model latency 0; "
        f"{sizes['workers']} worker x {sizes['threads']} threads",
        config={"idle_sessions": idle, "small_sessions": SMALL, **sizes, "model_latency_s": 0.0},
    )
    bench.platform.start_model(0.0)
    small_tenant = bench.tenant("sessions-small")
    small = _half(bench, small_tenant, SMALL, sizes)
    big_tenant = bench.tenant("sessions-big")
    big = _half(bench, big_tenant, idle, sizes)
    bench.retire([small_tenant, big_tenant])

    outcomes = [*small.pop("outcomes"), *big.pop("outcomes")]
    unfinished: dict[str, int] = {}
    for half in (small, big):
        for status, left in half.pop("unfinished").items():
            unfinished[status] = unfinished.get(status, 0) + left
    result.figures = {
        **{f"small_{k}": v for k, v in small.items()},
        **{f"big_{k}": v for k, v in big.items()},
        "insert_rows_per_s": round(idle / big["insert_s"]) if big["insert_s"] else None,
        "ratio_to_small": ratio(big["turns_per_s"], small["turns_per_s"]),
        "rss_ratio_to_small": ratio(big["worker_rss_peak_mb"], small["worker_rss_peak_mb"]),
        "failed": sum(outcome.failed for outcome in outcomes),
        "unfinished": unfinished,
    }
    f = result.figures
    row = result.row(
        f"turns/s, {idle:,} sessions",
        spread(f["big_turns_per_s_runs"]),
        f"{SMALL:,} sessions {spread(f['small_turns_per_s_runs'])}/s",
        f["ratio_to_small"],
    )
    result.goal(
        row, "≥ 0.90 (medians)", f["ratio_to_small"] is not None and f["ratio_to_small"] >= 0.9
    )
    result.row(
        "latency p50 / p99",
        f"{num(f['big_latency_p50_ms'])} / {num(f['big_latency_p99_ms'])} ms",
        f"{SMALL:,}: {num(f['small_latency_p50_ms'])} / {num(f['small_latency_p99_ms'])} ms",
    )
    row = result.row(
        "worker RSS peak",
        f"{num(f['big_worker_rss_peak_mb'])} MB",
        f"{SMALL:,}: {num(f['small_worker_rss_peak_mb'])} MB",
        f["rss_ratio_to_small"],
    )
    growth = f["rss_ratio_to_small"]
    result.goal(row, "≤ 1.10 (no growth)", growth is not None and growth <= 1.1)
    result.row(
        "worker RSS before → after load",
        f"{num(f['big_worker_rss_before_mb'])} → {num(f['big_worker_rss_after_mb'])} MB",
        f"{SMALL:,}: {num(f['small_worker_rss_before_mb'])} → "
        f"{num(f['small_worker_rss_after_mb'])} MB",
    )
    result.row(
        "idle sessions inserted",
        f"{idle:,} in {f['big_insert_s']} s",
        f"{num(f['insert_rows_per_s'])} rows/s",
    )
    result.note_problems(outcomes, unfinished)
    return result
