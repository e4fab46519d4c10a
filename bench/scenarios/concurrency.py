"""concurrency: C sessions send one message each at once to a model that takes L seconds.

The bound is measured, not computed: the pipeline floor (bench/floor.py) with its task
holding its thread L seconds, C requests at once on the same web server and workers, in
the same run (C/L, the arithmetic ideal, is shown beside it). The model server alone
answering C simultaneous calls is the model's floor. Worker memory is sampled throughout,
so the cost of a turn in flight shows.
"""

from __future__ import annotations

from ..context import Bench, per_unit_ms
from ..load import Job, Progress, model_calls
from ..measure import percentile
from ..platform import threads_for
from ..report import Result, cpu_rows, ms, num, ratio
from .overhead import floor_path

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
        # The pipeline floor at the same concurrency and latency, on the same processes.
        path = floor_path(tenant.slug, latency)
        bench.warm_up(
            [Job(tenant.api_key, f"floor-warm{i}") for i in range(len(warm))],
            len(warm),
            messages_path=path,
        )
        floor = bench.send(
            [Job(tenant.api_key, f"floor-s{i}") for i in range(count)],
            lanes=count,
            description=f"pipeline floor: {count} at once",
            messages_path=path,
        )
    finally:
        bench.platform.stop_workers()
        bench.retire([tenant])

    ideal = count / latency
    bound = floor.completed / floor.elapsed if floor.elapsed else 0.0
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
        "bound_per_s": round(bound, 1),  # the pipeline floor's, measured
        "ratio_to_bound": ratio(throughput, bound),
        "floor_completed": floor.completed,
        "ideal_per_s": round(ideal, 1),
        "ratio_to_ideal": ratio(throughput, ideal),
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
        f"pipeline floor {num(f['bound_per_s'])}/s (1 run)",
        f["ratio_to_bound"],
    )
    result.goal(row, "≥ 0.80", f["ratio_to_bound"] is not None and f["ratio_to_bound"] >= 0.8)
    result.row("", "", f"C/L {num(f['ideal_per_s'])}/s (computed)", f["ratio_to_ideal"])
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
    cpu_rows(result, "turn", f["cpu_ms_per_turn"])
    result.note_problems([outcome, model], unfinished)
    if floor.failed:
        result.notes.append(f"pipeline floor: {floor.failed} failed {dict(floor.failures)}")
    result.notes.append("single runs (a burst of C at once); no range")
    return result
