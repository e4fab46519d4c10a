"""`manage.py drain`: a worker running long multi-step turns leaves within one step."""

from __future__ import annotations

import re
import subprocess
from collections import Counter

import pytest

from agents.models import ACTIVE_STATUSES, Turn
from tests.support import ROOT, conversation, python, wait_until

from .conftest import not_succeeded, wait_for_turns
from .test_graceful_stop import STEP_LATENCY, job_of, script_tool_steps, tool_results_since_user

pytestmark = pytest.mark.django_db(transaction=True)


def test_drain_hands_running_turns_over_at_a_step_boundary_and_the_worker_exits(
    stack, dedicated, model, callers
):
    steps, jobs = 10, 4  # each turn needs 11 model calls of 0.5 s
    script_tool_steps(model, dedicated.tenant, steps)
    stack.env["TURN_REDISPATCH_AFTER_SECONDS"] = "30"  # hand-over must not wait for the reaper
    stack.env["WORKER_HEARTBEAT_SECONDS"] = "0.5"
    stack.start(web=True, workers=("a",), beat=True)

    keys = {f"job {j}": f"agent:ops:job{j}" for j in range(jobs)}
    ids = {job: stack.send(key, job)["turn"]["id"] for job, key in keys.items()}
    wait_until(
        lambda: len({job_of(r) for r in model.requests if tool_results_since_user(r) >= 2}) == jobs,
        timeout=30,
        message="every turn to be 2 steps in on worker a",
    )
    a = stack.hostname("a")
    entry = wait_until(
        lambda: (e := stack.registry().get(a)) and e["in_flight"] == jobs and e,
        timeout=10,
        message="worker a's registry entry to show its turns",
    )
    assert entry["state"] == "active"
    assert entry["expected_drain_seconds"] == pytest.approx(STEP_LATENCY, abs=0.3)
    stack.start(workers=("b",))

    drain = subprocess.run(
        python("manage.py", "drain", a), cwd=ROOT, env=stack.env, capture_output=True, text=True
    )

    assert drain.returncode == 0, drain.stdout + drain.stderr
    gone = re.search(rf"{re.escape(a)}: gone after ([\d.]+) s", drain.stdout)
    assert gone, drain.stdout
    assert float(gone.group(1)) < STEP_LATENCY + 1.5, drain.stdout  # one step and a bit
    assert not stack.workers["a"].alive()
    fates = re.findall(r"turn (\d+) \(agent:ops:job\d\): (handed over|finished)", drain.stdout)
    assert sorted(int(t) for t, _ in fates) == sorted(ids.values()), drain.stdout
    assert a not in stack.registry()

    turns = wait_for_turns(list(ids.values()), timeout=60)
    assert not_succeeded(turns) == []
    # Every step ran once, and each conversation went on on worker b from where it was.
    assert Counter(job_of(r) for r in model.requests) == dict.fromkeys(ids, steps + 1)
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
