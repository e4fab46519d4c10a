"""Workers die for real (SIGKILL): no accepted turn is lost, none is answered twice."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter

import pytest
from django.db import connection

from agents.models import ACTIVE_STATUSES, Message, Turn
from tests.support import conversation, wait_until

from .conftest import (
    answers_per_turn,
    assert_ledger_matches_received_calls,
    last_user_text,
    not_succeeded,
    wait_for_turns,
)

pytestmark = pytest.mark.django_db(transaction=True)

SESSIONS = 10
PER_SESSION = 5


def all_answers_saved(model, ignore: set[int] = frozenset()) -> bool:
    """Whether every answered call (but those in `ignore`, ids of records) is saved."""
    answered = {
        f"echo: {last_user_text(r)}"
        for r in model.requests
        if r["status"] == 200 and id(r) not in ignore
    }
    saved = Message.objects.filter(role="assistant", content__in=answered).values_list(
        "content", flat=True
    )
    return answered <= set(saved)


def kill_between_answers(model, pid: int, *, lost: set[int]) -> None:
    """SIGKILL `pid` once every answer sent so far is saved (answers are held meanwhile),
    and add the calls it had in flight to `lost`: the kill cuts off only unanswered calls."""
    model.hold_answers()
    try:
        wait_until(lambda: all_answers_saved(model, lost), timeout=30, message="answers saved")
        os.kill(pid, signal.SIGKILL)
        lost.update(id(r) for r in model.requests if r["pid"] == pid and not r["finished_at"])
    finally:
        model.release_answers()
        connection.close()  # this thread's own


def test_a_worker_killed_mid_run_loses_no_turn_and_answers_none_twice(stack, ops, model, callers):
    model.add_rule(latency=1.0)
    stack.start(web=True, workers=("a", "b"), beat=True)

    sent: dict[str, list[tuple[int, str]]] = {}
    for i in range(PER_SESSION):
        for s in range(SESSIONS):
            key, content = f"agent:ops:s{s}", f"s{s} m{i}"
            turn_id = stack.send(key, content)["turn"]["id"]
            sent.setdefault(key, []).append((turn_id, content))
    turn_ids = [turn_id for turns in sent.values() for turn_id, _ in turns]
    assert len(turn_ids) == SESSIONS * PER_SESSION

    wait_until(
        lambda: Turn.objects.filter(pk__in=turn_ids, status="succeeded").count() >= 10,
        timeout=30,
        message="10 turns to finish",
    )
    # Hold the model's answers until every answer already sent is saved: the kill then
    # cuts off calls that were not answered, so the ledger can be checked exactly.
    model.hold_answers()
    wait_until(lambda: all_answers_saved(model), timeout=30, message="answers to be saved")
    # Kill the worker with the most model calls in flight, so the kill interrupts turns.
    in_flight = [r for r in model.requests if r["finished_at"] is None]
    victim = Counter(r["worker"] for r in in_flight).most_common(1)[0][0]
    killed_at = time.time()
    stack.workers[victim].kill(signal.SIGKILL)
    # The kill must cut off work: calls in flight on the victim at that moment.
    cut_off = [r for r in model.requests if r["worker"] == victim and r["finished_at"] is None]
    interrupted = {last_user_text(r) for r in cut_off}
    assert interrupted, "the killed worker was not running any turn"
    model.release_answers()

    turns = wait_for_turns(turn_ids, timeout=45)

    assert not_succeeded(turns) == []
    assert set(answers_per_turn(turn_ids).values()) == {1}
    for key, turns_of_session in sent.items():
        expected = []
        for _, content in turns_of_session:
            expected += [("user", content), ("assistant", f"echo: {content}")]
        history = conversation(key)
        assert [(role, content) for _, role, content in history] == expected, key
        assert [seq for seq, _, _ in history] == list(range(1, len(expected) + 1))
    # A model answer that was saved is never asked for again: only the calls the kill cut
    # off were repeated, once.
    calls = Counter(last_user_text(r) for r in model.requests)
    assert set(calls) == {content for turns in sent.values() for _, content in turns}
    repeated = {content for content, n in calls.items() if n > 1}
    # A repeated call is one whose answer had not been saved when its worker died: the
    # saved answer of its turn comes from after the kill.
    turn_of = {content: turn_id for turns in sent.values() for turn_id, content in turns}
    for content in repeated:
        answer = Message.objects.get(turn_id=turn_of[content], role="assistant")
        assert answer.created_at.timestamp() > killed_at, (content, "answer saved, asked again")
    assert max(calls.values()) <= 2
    rerun = [t for t in turns.values() if t.attempts > 1]
    assert rerun, "no turn was re-run after the kill"
    assert all(t.attempts == 2 for t in rerun)
    assert_ledger_matches_received_calls(model, turns, lost={id(r) for r in cut_off})


def test_a_turn_that_keeps_killing_its_worker_fails_with_worker_lost(stack, ops, model, callers):
    kills: list[tuple[str | None, float]] = []
    killed_calls: set[int] = set()

    def crash_on_poison(record: dict) -> None:
        # Runs while the worker waits for the answer: the "model call" kills it, once the
        # answers the worker already got are saved (so the ledger can be checked exactly).
        if "poison" in record["messages"][-1]["content"]:
            kills.append((record["worker"], time.time()))
            killed_calls.add(id(record))
            if record["pid"]:
                threading.Thread(
                    target=kill_between_answers,
                    args=(model, record["pid"]),
                    kwargs={"lost": killed_calls},
                    daemon=True,
                ).start()

    callers.callbacks.append(crash_on_poison)
    model.add_rule(match=r"poison", latency=10)  # never answered: its caller is dead
    model.add_rule(latency=0.2)
    stack.start(web=True, workers=("a", "b"), beat=True)

    # A process supervisor: a worker that dies is started again.
    stopping = threading.Event()

    def supervise() -> None:
        while not stopping.wait(0.2):
            for name, process in list(stack.workers.items()):
                if not process.alive():
                    stack.restart_worker(name, wait=False)

    supervisor = threading.Thread(target=supervise, daemon=True)
    supervisor.start()
    try:
        poison = stack.send("agent:ops:poisoned", "poison pill")["turn"]["id"]
        after = stack.send("agent:ops:poisoned", "after the pill")["turn"]["id"]
        others: list[tuple[str, str, int]] = []
        deadline = time.monotonic() + 60
        while Turn.objects.get(pk=poison).status in ACTIVE_STATUSES:
            assert time.monotonic() < deadline, f"the poison turn still runs; kills: {kills}"
            i = len(others)
            key, content = f"agent:ops:other{i % 3}", f"other {i}"
            others.append((key, content, stack.send(key, content)["turn"]["id"]))
            time.sleep(0.5)
        other_ids = [turn_id for _, _, turn_id in others]
        turns = wait_for_turns([poison, after, *other_ids], timeout=40)
    finally:
        stopping.set()
        supervisor.join(5)

    failed = turns[poison]
    assert (failed.status, failed.error_code) == ("failed", "worker_lost")
    assert failed.attempts == 3  # TURN_MAX_ATTEMPTS
    # Each attempt reached the model once and took its worker down; no fourth attempt.
    assert len(kills) == 3, kills
    assert all(worker is not None for worker, _ in kills), kills
    seen_by_user = stack.get_turn(poison)
    assert seen_by_user["status"] == "failed"
    assert seen_by_user["error"]["code"] == "worker_lost"

    # The session goes on: the turn queued behind the poison is answered.
    assert turns[after].status == "succeeded"
    assert [(role, content) for _, role, content in conversation("agent:ops:poisoned")] == [
        ("user", "poison pill"),
        ("user", "after the pill"),
        ("assistant", "echo: after the pill"),
    ]
    # The tenant's other sessions kept being served while the poison turn crashed workers.
    assert {turns[t].status for t in other_ids} == {"succeeded"}
    assert set(answers_per_turn(other_ids).values()) == {1}
    served_meanwhile = [t for t in other_ids if turns[t].finished_at < failed.finished_at]
    assert len(served_meanwhile) >= 2, (len(served_meanwhile), len(other_ids))
    for i in range(3):
        mine = [content for key, content, _ in others if key == f"agent:ops:other{i}"]
        expected = []
        for content in mine:
            expected += [("user", content), ("assistant", f"echo: {content}")]
        history = conversation(f"agent:ops:other{i}")
        assert [(role, content) for _, role, content in history] == expected
    # Money: the poison calls never reached their (dead) callers and are not billed; every
    # answered call is on the ledger once.
    assert_ledger_matches_received_calls(model, turns, lost=killed_calls)
