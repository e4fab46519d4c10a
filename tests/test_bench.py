"""`manage.py bench all --quick` runs every scenario end to end and reports every figure.

It starts its own platform (model server, web, workers, beat) on a database it creates and
drops and on Redis database 14 of the suite's Redis server, so it needs no fixture; the
speed it measures is not asserted here, only that each figure is there, and that the runs
which stop workers under load (a SIGKILL in `recovery`, scale-downs in `elastic`) lost no
turn and answered none twice.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from .conftest import TEST_REDIS_URL
from .support import ROOT

# What a CPU row's value is the sum of (bench.report.cpu_rows).
CPU_LINES = ("web", "workers", "postgres", "redis", "rabbitmq", "server", "model", "beat")
CPU_LINES += ("client", "other")
FIGURES = {
    "overhead": [
        "turns_per_s",
        "turns_per_s_runs",
        "floor_per_s",
        "ratio_to_floor",
        "noop_per_s",
        "ratio_to_noop",
        "latency_p50_ms",
        "latency_p99_ms",
        "overhead_p50_ms",
        "overhead_p99_ms",
        "noop_alone_p50_ms",
        "floor_alone_p50_ms",
        "floor_alone_p99_ms",
        "cpu_ms_per_turn",
        "cpu_ms_per_floor_turn",
        "server_cpu_ms_per_turn",
        "server_cpu_ratio_to_floor",
        "client_cpu_ms_per_turn",
        "completed",
        "failed",
    ],
    "concurrency": [
        "completed",
        "throughput_per_s",
        "bound_per_s",
        "ratio_to_bound",
        "ideal_per_s",
        "model_alone_per_s",
        "latency_minus_model_p50_ms",
        "latency_minus_model_p99_ms",
        "worker_rss_peak_mb",
        "worker_rss_per_inflight_turn_kb",
    ],
    "tenants": [
        "one_tenant_turns_per_s",
        "many_tenants_turns_per_s",
        "ratio_to_one_tenant",
        "many_tenants_latency_p99_ms",
    ],
    "fairness": [
        "quiet_p50_ms",
        "quiet_p99_ms",
        "quiet_alone_p50_ms",
        "quiet_alone_p99_ms",
        "p99_ratio",
        "noisy_finished",
    ],
    "sessions": [
        "small_turns_per_s",
        "big_turns_per_s",
        "big_turns_per_s_runs",
        "ratio_to_small",
        "small_worker_rss_peak_mb",
        "big_worker_rss_peak_mb",
        "big_insert_s",
    ],
    "recovery": [
        "lost",
        "duplicated",
        "workers_killed",
        "killed_after_finished",
        "finish_s",
        "finish_no_kill_s",
        "finish_ratio",
    ],
    "elastic": [
        "lost",
        "duplicated",
        "wait_p99_s",
        "static_max_wait_p99_s",
        "first_new_worker_s",
        "backlog_empty_after_surge_s",
        "peak_workers",
        "worker_seconds",
        "static_max_worker_seconds",
        "worker_seconds_ratio",
    ],
}


@pytest.mark.slow
@pytest.mark.timeout(480)
def test_quick_bench_reports_every_figure_of_every_scenario(tmp_path):
    report = tmp_path / "bench.json"
    env = dict(os.environ, REDIS_URL=TEST_REDIS_URL)
    for name in ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "TEST_REDIS_URL"):
        env.pop(name, None)  # bench derives its own from REDIS_URL (database 14)
    command = [sys.executable, "manage.py", "bench", "all", "--quick", "--json", str(report)]

    with subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=400)
        except subprocess.TimeoutExpired:
            # SIGTERM, not SIGKILL: the bench stops the processes it started and reports.
            process.terminate()
            stdout, stderr = process.communicate(timeout=60)
            pytest.fail(f"bench --quick ran over 400 s:\n{stdout[-3000:]}\n{stderr[-5000:]}")
    done = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)

    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    scenarios = json.loads(report.read_text())["scenarios"]
    assert set(scenarios) == set(FIGURES)
    for name, figures in FIGURES.items():
        reported = scenarios[name]["figures"]
        missing = [f for f in figures if reported.get(f) is None]
        assert not missing, f"{name} lacks {missing}; notes: {scenarios[name]['notes']}"
        assert scenarios[name]["error"] is None
    for name in FIGURES:
        assert f"\n{name} — " in done.stdout  # the table has a block per scenario

    recovery = scenarios["recovery"]["figures"]
    # The kill came while turns were still unfinished, so there was something to recover.
    assert recovery["workers_killed"] == 1, scenarios["recovery"]["notes"]
    assert recovery["killed_after_finished"] < recovery["turns"]
    assert (recovery["lost"], recovery["duplicated"]) == (0, 0), recovery["statuses"]
    assert (recovery["lost_no_kill"], recovery["duplicated_no_kill"]) == (0, 0)
    overhead = scenarios["overhead"]
    # The pipeline floor answered every request, and the CPU lines add up to their totals.
    assert overhead["figures"]["floor_failed"] == 0, overhead["notes"]
    for name in ("cpu_ms_per_turn", "cpu_ms_per_floor_turn", "cpu_ms_per_noop"):
        assert "client" in overhead["figures"][name] and "other" in overhead["figures"][name]
    table = done.stdout.split("\noverhead — ", 1)[1].split("\n\n", 1)[0]
    cpu_lines = [line for line in table.splitlines() if "CPU ms per" in line]
    assert len(cpu_lines) == 6
    for line in cpu_lines:
        value, rest = re.search(r"CPU ms per \D*?(\d+\.\d+)\s+(.*)", line).groups()
        shown = [float(v) for _, v in re.findall(f"({'|'.join(CPU_LINES)}) (\\d+\\.\\d+)", rest)]
        assert float(value) == pytest.approx(sum(shown), abs=0.011), line
    elastic = scenarios["elastic"]["figures"]
    assert (elastic["lost"], elastic["duplicated"]) == (0, 0), scenarios["elastic"]["notes"]
    # --quick runs the static pool of six, not the one of one.
    assert (elastic["static_max_lost"], elastic["static_max_duplicated"]) == (0, 0)
