"""fairness: a quiet tenant's latency while a noisy one floods the platform.

The noisy tenant (limits raised, so nothing but the platform holds it back) submits its
turns as fast as the API takes them; meanwhile the quiet tenant (limits raised too, so
its own rate and budget never hold it back) sends one message every 100 ms and waits for
each answer. Then the quiet tenant sends the same number of messages with no noise: that
is its floor.
"""

from __future__ import annotations

import asyncio
import itertools
import time

from agents.models import FINAL_STATUSES, Turn

from ..context import WAIT, Bench
from ..database import closed_after
from ..load import Api, Outcome, Progress, lanes_of, run_lanes, run_paced, turn_jobs
from ..measure import percentile
from ..report import Result, ms, num, ratio

INTERVAL = 0.1  # the quiet tenant's pace
# Enough that a quiet session's next message comes long after its last answer.
QUIET_SESSIONS = 100


def _finished(tenant_id: int, after_id: int) -> int:
    with closed_after():
        return Turn.objects.filter(
            tenant_id=tenant_id, pk__gt=after_id, status__in=FINAL_STATUSES
        ).count()


def run(bench: Bench) -> Result:
    o = bench.options
    flood = o.pick(o.turns, 5000, 80)
    latency = o.pick(o.latency, 0.5, 0.2)
    noisy_sessions = min(flood, o.pick(o.load_sessions, 500, 10))
    submitters = min(noisy_sessions, 50)
    workers = o.pick(o.workers, 2, 1)
    threads = o.pick(o.worker_concurrency, 32, 16)
    result = Result(
        "fairness",
        f"noisy tenant floods {flood} turns over {noisy_sessions} sessions ({submitters} "
        f"submitting at once, no wait); quiet tenant sends 1 every {INTERVAL * 1000:.0f} ms "
        f"with wait; model latency {latency} s; {workers} worker(s) x {threads} threads",
        config={
            "noisy_turns": flood,
            "noisy_sessions": noisy_sessions,
            "noisy_submitters": submitters,
            "quiet_interval_s": INTERVAL,
            "model_latency_s": latency,
            "workers": workers,
            "worker_concurrency": threads,
            "web_workers": o.web_workers,
        },
    )
    bench.platform.start_model(latency)
    noisy = bench.tenant("noisy")
    # Raised too: at 10 messages a second for as long as the flood lasts, the quiet tenant
    # would run into its own default rate (600 calls a minute) and daily token budget,
    # which is not what this measures. Its load needs a handful of turns at once.
    quiet = bench.tenant("quiet")
    noisy_jobs, _ = bench.idle_sessions([(noisy, f"s{i}") for i in range(noisy_sessions)])
    quiet_jobs, _ = bench.idle_sessions([(quiet, f"s{i}") for i in range(QUIET_SESSIONS)])
    bench.platform.start_workers(workers, threads)
    try:
        bench.warm_up(noisy_jobs[:10] + quiet_jobs[:10], 20)
        first = bench.last_turn_id()

        async def with_noise() -> tuple[Outcome, Outcome, float]:
            done = asyncio.Event()
            started = time.perf_counter()
            drained_at = [0.0]

            async def watch_noisy() -> None:
                # Three times what the worker threads need, or 5 turns/s, plus a margin.
                slots = workers * threads
                deadline = started + 30 + max(3 * flood * latency / slots, flood / 5)
                while time.perf_counter() < deadline:
                    if await asyncio.to_thread(_finished, noisy.id, first) >= flood:
                        break
                    await asyncio.sleep(0.25)
                drained_at[0] = time.perf_counter() - started
                done.set()

            async with Api(bench.platform.web_url, connections=submitters + 50) as api:
                with (
                    bench.bar("noisy flood", flood) as noisy_bar,
                    bench.bar("quiet, with noise", None) as quiet_bar,
                ):
                    watcher = asyncio.create_task(watch_noisy())
                    flooding = run_lanes(
                        lanes_of(turn_jobs(noisy_jobs, flood), submitters),
                        lambda job: api.send(job, wait=None),
                        Progress(noisy_bar),
                    )
                    quietly = run_paced(
                        itertools.cycle(quiet_jobs),
                        lambda job: api.send(job, wait=WAIT),
                        interval=INTERVAL,
                        until=lambda _: done.is_set(),
                        progress=Progress(quiet_bar),
                    )
                    submitted, quiet_outcome, _ = await asyncio.gather(flooding, quietly, watcher)
            return submitted, quiet_outcome, drained_at[0]

        submitted, noisy_quiet, drained = bench.run(with_noise())
        noisy_done = _finished(noisy.id, first)
        sent = noisy_quiet.completed + noisy_quiet.failed
        bench.say(f"  flood of {flood} drained in {drained:.1f} s; quiet sent {sent}")

        async def alone() -> Outcome:
            async with Api(bench.platform.web_url, connections=50) as api:
                with bench.bar("quiet, alone", sent) as bar:
                    return await run_paced(
                        itertools.cycle(quiet_jobs),
                        lambda job: api.send(job, wait=WAIT),
                        interval=INTERVAL,
                        until=lambda started: started >= sent,
                        progress=Progress(bar),
                    )

        quiet_alone = bench.run(alone())
        unfinished = bench.unfinished([noisy, quiet])
    finally:
        bench.platform.stop_workers()
        bench.retire([noisy, quiet])

    def p(outcome: Outcome, q: float) -> float | None:
        return ms(percentile(outcome.latencies, q))

    result.figures = {
        "noisy_turns": flood,
        "noisy_submitted": submitted.completed,
        "noisy_finished": noisy_done,
        "noisy_drain_s": round(drained, 2),
        "noisy_turns_per_s": round(noisy_done / drained, 1) if drained else None,
        "quiet_sent": sent,
        "quiet_p50_ms": p(noisy_quiet, 50),
        "quiet_p99_ms": p(noisy_quiet, 99),
        "quiet_alone_p50_ms": p(quiet_alone, 50),
        "quiet_alone_p99_ms": p(quiet_alone, 99),
        "p50_ratio": ratio(p(noisy_quiet, 50), p(quiet_alone, 50)),
        "p99_ratio": ratio(p(noisy_quiet, 99), p(quiet_alone, 99)),
        "quiet_failed": noisy_quiet.failed + quiet_alone.failed,
        "unfinished": unfinished,
    }
    f = result.figures
    result.row(
        "quiet p50 with noise",
        f"{num(f['quiet_p50_ms'])} ms",
        f"alone {num(f['quiet_alone_p50_ms'])} ms",
        f["p50_ratio"],
    )
    row = result.row(
        "quiet p99 with noise",
        f"{num(f['quiet_p99_ms'])} ms",
        f"alone {num(f['quiet_alone_p99_ms'])} ms",
        f["p99_ratio"],
    )
    result.goal(row, "≤ 1.50", f["p99_ratio"] is not None and f["p99_ratio"] <= 1.5)
    result.row("quiet messages", f"{sent} x 2", f"{f['quiet_failed']} failed")
    result.row(
        "noisy flood",
        f"{f['noisy_finished']} of {flood} in {f['noisy_drain_s']} s",
        f"{num(f['noisy_turns_per_s'])} turns/s",
    )
    if noisy_done < flood:
        result.notes.append(f"the noisy flood did not drain: {noisy_done} of {flood} finished")
    result.note_problems([submitted, noisy_quiet, quiet_alone], unfinished)
    result.notes.append("single run of each load (quiet alone, quiet under the flood): no range")
    return result
