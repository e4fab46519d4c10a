"""`manage.py drain`: a worker running long multi-step turns leaves within one step."""

from __future__ import annotations

import re
import subprocess
import threading
from collections import Counter

import pytest

from agents.models import ACTIVE_STATUSES, Turn
from tests.support import ROOT, conversation, python, wait_until

from .conftest import not_succeeded, wait_exit, wait_for_turns
from .test_graceful_stop import (
    CALCULATE,
    STEP_LATENCY,
    job_of,
    script_tool_steps,
    tool_results_since_user,
)

pytestmark = pytest.mark.django_db(transaction=True)


def test_drain_hands_running_turns_over_at_a_step_boundary_and_the_worker_exits(
    stack, dedicated, model, callers
):
    steps, jobs = 10, 4  # each turn needs 11 model calls
    # Each turn's third model call stays open until the test lets it go, so the turns are
    # still running on worker a however long the machine takes to start b and the drain.
    release = threading.Event()
    model.add_rule(
        match=lambda r: tool_results_since_user(r) == 2, tool_calls=CALCULATE, hold=release
    )
    script_tool_steps(model, dedicated.tenant, steps)
    stack.env["TURN_REDISPATCH_AFTER_SECONDS"] = "30"  # hand-over must not wait for the reaper
    stack.env["WORKER_HEARTBEAT_SECONDS"] = "0.5"
    stack.env["WORKER_SHUTDOWN_GRACE_SECONDS"] = "60"  # the held calls are not abandoned
    stack.start(web=True, workers=("a",), beat=True)

    keys = {f"job {j}": f"agent:ops:job{j}" for j in range(jobs)}
    ids = {job: stack.send(key, job)["turn"]["id"] for job, key in keys.items()}
    held = wait_until(
        lambda: len(calls := [r for r in model.requests if r["held"]]) == jobs and calls,
        timeout=60,
        message="every turn to be in its third model call on worker a",
    )
    assert {r["worker"] for r in held} == {"a"}
    a = stack.hostname("a")
    entry = wait_until(
        lambda: (e := stack.registry().get(a)) and e["in_flight"] == jobs and e,
        timeout=10,
        message="worker a's registry entry to show its turns",
    )
    assert entry["state"] == "active"
    assert entry["expected_drain_seconds"] == pytest.approx(STEP_LATENCY, abs=0.3)
    stack.start(workers=("b",))

    drain = subprocess.Popen(
        python("manage.py", "drain", a),
        cwd=ROOT,
        env={**stack.env, "PYTHONUNBUFFERED": "1"},  # its first line, as soon as printed
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first_line = drain.stdout.readline()
        assert f"{a}: draining" in first_line, first_line + drain.stderr.read()
        assert f"; {jobs} turn(s) running" in first_line, first_line
        # Worker a has stopped consuming, but its turns are still in their model calls:
        # the registry must keep it, and the drain must still be waiting for it.
        wait_until(lambda: not stack.answers_ping("a"), timeout=20, message="a to stop consuming")
        entry = stack.registry().get(a)
        assert entry is not None, "worker a left the registry with its turns still running"
        assert (entry["state"], entry["in_flight"]) == ("draining", jobs)
        assert drain.poll() is None, drain.stdout.read()
        assert [r["held"] for r in model.requests if r["worker"] == "a"][-jobs:] == [True] * jobs
    finally:
        release.set()
    out, err = drain.communicate(timeout=60)
    out = first_line + out

    assert drain.returncode == 0, out + err
    assert re.search(rf"{re.escape(a)}: gone after ([\d.]+) s", out), out
    wait_exit(stack.workers["a"], timeout=10)
    fates = re.findall(r"turn (\d+) \(agent:ops:job\d\): (handed over|finished)", out)
    assert sorted(int(t) for t, _ in fates) == sorted(ids.values()), out
    assert a not in stack.registry()

    turns = wait_for_turns(list(ids.values()), timeout=60)
    assert not_succeeded(turns) == []
    # Every step ran once; worker a ran no step after the one it was in when the drain came
    # (two, then the held third), and each conversation went on on worker b from there.
    assert Counter(job_of(r) for r in model.requests) == dict.fromkeys(ids, steps + 1)
    assert Counter(job_of(r) for r in model.requests if r["worker"] == "a") == dict.fromkeys(ids, 3)
    for job, key in keys.items():
        roles = [role for _, role, _ in conversation(key)]
        assert roles == ["user"] + ["assistant", "tool"] * steps + ["assistant"], job
        assert [r["worker"] for r in model.requests if job_of(r) == job][-1] == "b", job
        assert turns[ids[job]].attempts == 1  # a drain is not a crash
    assert not Turn.objects.filter(tenant=dedicated.tenant, status__in=ACTIVE_STATUSES).exists()


def test_drain_names_a_worker_that_is_not_running(stack, dedicated):
    stack.start(workers=("a",))
    wait_until(lambda: stack.hostname("a") in stack.registry(), timeout=15, message="a's entry")

    missing = subprocess.run(
        python("manage.py", "drain", "nobody@nowhere"),
        cwd=ROOT,
        env=stack.env,
        capture_output=True,
        text=True,
    )
    neither = subprocess.run(
        python("manage.py", "drain"), cwd=ROOT, env=stack.env, capture_output=True, text=True
    )

    assert missing.returncode == 1
    assert "no running worker matches" in missing.stderr
    assert neither.returncode == 1
    assert "name one worker, or --shard k, or --all" in neither.stderr
    assert stack.workers["a"].alive()  # nothing was drained
