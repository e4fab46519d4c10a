"""SIGTERM on a worker mid-run: it hands its turns back at a step boundary and exits fast."""

from __future__ import annotations

import signal
from collections import Counter

import pytest

from agents.models import ACTIVE_STATUSES, Message, Turn
from tests.support import conversation, make_agent, wait_until

from .conftest import (
    assert_ledger_matches_received_calls,
    not_succeeded,
    wait_exit,
    wait_for_turns,
)

pytestmark = pytest.mark.django_db(transaction=True)

STEP_LATENCY = 0.5
CALCULATE = [{"name": "calculator", "arguments": {"expression": "6*7"}}]


def tool_results_since_user(record: dict) -> int:
    count = 0
    for message in reversed(record["messages"]):
        if message["role"] == "user":
            return count
        count += message["role"] == "tool"
    return count


def job_of(record: dict) -> str:
    return next(m["content"] for m in record["messages"] if m["role"] == "user")


def script_tool_steps(model, tenant, steps: int, latency: float = STEP_LATENCY) -> None:
    """Every turn calls the calculator `steps` times, one model call each, then answers."""
    make_agent(tenant, model, tools=["calculator"], max_iterations=steps + 2)
    model.add_rule(
        match=lambda r: tool_results_since_user(r) < steps, tool_calls=CALCULATE, latency=latency
    )
    model.add_rule(latency=latency)  # then the answer: "tool said: 42"


def test_a_worker_stopped_with_sigterm_hands_its_turns_over_at_a_step_boundary(
    stack, dedicated, model, callers
):
    steps, jobs = 10, 6  # each turn needs 11 model calls of 0.5 s
    script_tool_steps(model, dedicated.tenant, steps)
    # The production re-dispatch delay: a handed-back turn must go on at once, without
    # waiting for the reaper's sweep of old queued turns.
    stack.env["TURN_REDISPATCH_AFTER_SECONDS"] = "30"
    stack.start(web=True, workers=("a", "b"), beat=True)

    keys = {f"job {j}": f"agent:ops:job{j}" for j in range(jobs)}
    ids = {job: stack.send(key, job)["turn"]["id"] for job, key in keys.items()}
    wait_until(
        lambda: len({job_of(r) for r in model.requests if tool_results_since_user(r) >= 2}) == jobs,
        timeout=30,
        message="every turn to be 2 steps in",
    )
    on_a = {job_of(r) for r in model.requests if r["worker"] == "a"}
    assert on_a, "worker a runs none of the turns"

    stack.workers["a"].kill(signal.SIGTERM)
    stopped_after = wait_exit(stack.workers["a"], timeout=15)

    unfinished_on_a = Turn.objects.filter(
        pk__in=[ids[job] for job in on_a], status__in=ACTIVE_STATUSES
    ).count()
    assert stopped_after < 3.0, f"worker a took {stopped_after:.1f}s to stop"
    assert unfinished_on_a == len(on_a)  # it did not run its turns to the end first
    turns = wait_for_turns(list(ids.values()), timeout=50)

    assert not_succeeded(turns) == []
    # Every step ran once: as many model calls and tool results as the script needs.
    calls = Counter(job_of(r) for r in model.requests)
    assert calls == dict.fromkeys(ids, steps + 1)
    for job, turn_id in ids.items():
        roles = [role for _, role, _ in conversation(keys[job])]
        assert roles == ["user"] + ["assistant", "tool"] * steps + ["assistant"], job
        tool_ids = Message.objects.filter(turn_id=turn_id, role="tool").values_list(
            "tool_call_id", flat=True
        )
        assert len(set(tool_ids)) == steps
        assert turns[turn_id].iterations == steps + 1
    # Worker a's turns went on elsewhere, from where they stopped.
    for job in on_a:
        assert [r["worker"] for r in model.requests if job_of(r) == job][-1] == "b", job
        assert turns[ids[job]].attempts == 1  # a hand-back is not a crash: no new attempt
    assert not Turn.objects.filter(tenant=dedicated.tenant, status__in=ACTIVE_STATUSES).exists()
    # Every call of the handed-back turns is on the ledger once: none lost, none doubled.
    assert_ledger_matches_received_calls(model, turns, lost=set())
    # ...and at once: the pause a hand-over costs is about one step, not a reaper sweep.
    pauses = {}
    for job in on_a:
        mine = [r for r in model.requests if job_of(r) == job]
        last_on_a = max(r["finished_at"] for r in mine if r["worker"] == "a")
        first_after = min(
            r["started_at"] for r in mine if r["worker"] == "b" and r["started_at"] > last_on_a
        )
        pauses[f"turn {ids[job]}"] = round(first_after - last_on_a, 2)
    assert max(pauses.values()) < 3.0, f"pause between a's last step and b's first (s): {pauses}"


def test_a_turn_handed_back_by_a_draining_worker_is_not_counted_as_a_crash(
    stack, dedicated, model, callers
):
    """TURN_MAX_ATTEMPTS=2: a turn may be found orphaned (its worker dead) once, not twice.

    The turn is handed back once by a worker stopping cleanly (a rolling deploy), then
    its next worker is killed mid-call. That is one crash: the turn must go on.
    """
    steps = 12
    script_tool_steps(model, dedicated.tenant, steps, latency=0.4)
    stack.env["TURN_MAX_ATTEMPTS"] = "2"
    stack.start(web=True, workers=("a", "b", "c"), beat=True)
    turn_id = stack.send("agent:ops:main", "long job")["turn"]["id"]

    wait_until(lambda: len(model.requests) >= 2, timeout=20, message="two steps")
    drained = model.requests[-1]["worker"]
    stack.workers[drained].kill(signal.SIGTERM)
    wait_exit(stack.workers[drained], timeout=15)

    def call_elsewhere():
        later = [r for r in model.requests if r["worker"] not in (None, drained)]
        return later[-1] if later else None

    crashed = wait_until(call_elsewhere, timeout=30, message="the turn to go on elsewhere")[
        "worker"
    ]
    stack.workers[crashed].kill(signal.SIGKILL)  # mid-call

    turn = wait_for_turns([turn_id], timeout=40)[turn_id]

    assert (turn.status, turn.error_code) == ("succeeded", ""), (
        turn.status,
        turn.error_code,
        turn.error_message,
        f"attempts={turn.attempts}",
    )
    calls = len(model.requests)
    assert steps + 1 <= calls <= steps + 2  # at most the call the kill cut off, again
    roles = [role for _, role, _ in conversation("agent:ops:main")]
    assert roles == ["user"] + ["assistant", "tool"] * steps + ["assistant"]
