"""concurrency: C sessions send one message each at once to a model that takes L seconds.

The bound is C/L turns per second (every turn waits on the model at the same time); the
floor measured in the same run is the model server alone answering C simultaneous calls.
Worker memory is sampled throughout, so the cost of a turn in flight shows.
"""

from __future__ import annotations

from ..context import Bench, per_unit_ms
from ..load import Progress, model_calls
from ..measure import percentile
from ..platform import threads_for
from ..report import Result, ms, num, platform_cpu, ratio

MB = 1024 * 1024


def run(bench: Bench) -> Result:
    o = bench.options
    count = o.pick(o.concurrency, 1000, 50)
    latency = o.pick(o.latency, 2.0, 0.5)
    workers = o.pick(o.workers, 2, 1)
    threads = o.pick(o.worker_concurrency, threads_for(count, workers), threads_for(count, workers))
    result = Result(
        "concurrency",
        f"{count} sessions x 1 message at once, model latency {latency} s; "
        f"{workers} worker(s) x {threads} threads, {o.web_workers} web workers",
        config={
            "sessions": count,
            "model_latency_s": latency,
            "workers": workers,
            "worker_concurrency": threads,
            "web_workers": o.web_workers,
        },
    )
    bench.platform.start_model(latency)
    with bench.bar("model server alone", count, unit="call") as bar:
        model = bench.run(model_calls(bench.platform.model_url, count, Progress(bar)))
    tenant = bench.tenant("concurrency")
    jobs, _ = bench.idle_sessions([(tenant, f"s{i}") for i in range(count)])
    warm = [tenant.job(f"warm{i}") for i in range(min(count, 20))]
    bench.platform.start_workers(workers, threads)
    try:
        bench.warm_up(warm, len(warm))
        meter = bench.cpu_meter().start()
        with bench.worker_memory() as memory:
            outcome = bench.send(jobs, lanes=count, description=f"{count} turns at once")
        cpu = meter.stop()
        unfinished = bench.unfinished([tenant])
    finally:
        bench.platform.stop_workers()
        bench.retire([tenant])

    bound = count / latency
    beyond = [max(0.0, t - latency) for t in outcome.latencies]
    model_beyond = [max(0.0, t - latency) for t in model.latencies]
    # Throughput of the whole burst: every turn done, over the time the last one took.
    throughput = outcome.completed / outcome.elapsed if outcome.elapsed else 0.0
    model_throughput = model.completed / model.elapsed if model.elapsed else 0.0
    grown = max(0, memory.peak - memory.first)
    result.figures = {
        "completed": outcome.completed,
        "failed": outcome.failed,
        "makespan_s": round(outcome.elapsed, 2),
        "throughput_per_s": round(throughput, 1),
        "bound_per_s": round(bound, 1),
        "ratio_to_bound": ratio(throughput, bound),
        "model_alone_per_s": round(model_throughput, 1),
        "ratio_to_model_alone": ratio(throughput, model_throughput),
        "latency_minus_model_p50_ms": ms(percentile(beyond, 50)),
        "latency_minus_model_p99_ms": ms(percentile(beyond, 99)),
        "model_alone_minus_latency_p50_ms": ms(percentile(model_beyond, 50)),
        "model_alone_minus_latency_p99_ms": ms(percentile(model_beyond, 99)),
        "worker_rss_before_mb": round(memory.first / MB, 1),
        "worker_rss_peak_mb": round(memory.peak / MB, 1),
        "worker_rss_per_inflight_turn_kb": round(grown / 1024 / count, 1),
        "cpu_ms_per_turn": per_unit_ms(cpu, outcome.completed),
        "client_cpu_ms_per_turn": round(outcome.client_cpu * 1000 / max(1, outcome.completed), 2),
        "unfinished": unfinished,
    }
    f = result.figures
    row = result.row("completed", f"{f['completed']} of {count}", f"{f['failed']} failed")
    result.goal(row, "all", f["completed"] == count)
    row = result.row(
        "throughput turns/s",
        num(f["throughput_per_s"]),
        f"bound C/L {num(f['bound_per_s'])}/s",
        f["ratio_to_bound"],
    )
    result.goal(row, "≥ 0.80", f["ratio_to_bound"] is not None and f["ratio_to_bound"] >= 0.8)
    result.row(
        "",
        "",
        f"model alone {num(f['model_alone_per_s'])}/s",
        f["ratio_to_model_alone"],
    )
    result.row("makespan", f"{f['makespan_s']} s", f"model latency {latency} s")
    result.row(
        "latency - L p50 / p99",
        f"{num(f['latency_minus_model_p50_ms'])} / {num(f['latency_minus_model_p99_ms'])} ms",
        f"model alone {num(f['model_alone_minus_latency_p50_ms'])} / "
        f"{num(f['model_alone_minus_latency_p99_ms'])} ms",
    )
    result.row(
        "worker RSS before / peak",
        f"{num(f['worker_rss_before_mb'])} / {num(f['worker_rss_peak_mb'])} MB",
        f"{workers} process(es)",
    )
    result.row(
        "worker memory per in-flight turn",
        f"{num(f['worker_rss_per_inflight_turn_kb'])} KB",
        "(peak - before) / C",
    )
    breakdown = ", ".join(f"{k} {v:.1f}" for k, v in f["cpu_ms_per_turn"].items() if v >= 0.05)
    result.row("CPU ms per turn", f"{platform_cpu(f['cpu_ms_per_turn']):.1f}", breakdown)
    result.note_problems([outcome, model], unfinished)
    return result
