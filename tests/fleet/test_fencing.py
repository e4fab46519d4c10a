"""A zombie — a worker whose session lease was taken over — cannot write anything."""

from __future__ import annotations

import os
import signal
import uuid

import pytest
import redis
from django.conf import settings

from agents import services
from agents.models import Message, MessageRole, Turn, TurnStatus
from agents.runtime import fenced
from agents.runtime.lease import Lease, LeaseLost, claim_fence, keeper
from tenants.models import Tenant
from tests.support import conversation, make_agent, wait_until

from .conftest import answers_per_turn, wait_for_turns


def _snapshot(turn: Turn) -> tuple:
    row = Turn.objects.values_list(
        "status", "iterations", "finished_at", "error_code", "input_tokens", "fence"
    ).get(pk=turn.pk)
    messages = list(
        Message.objects.filter(session_id=turn.session_id)
        .order_by("id")
        .values_list("id", "seq", "role", "content")
    )
    return row, messages


@pytest.fixture
def queued_turn(db, model, settings):
    """A turn that nothing runs: a dedicated tenant's, its trigger never sent."""
    # Ids repeat between runs and the suite's Redis may be shared: keys of our own.
    settings.REDIS_KEY_PREFIX = f"bc-fence-{uuid.uuid4().hex[:8]}"
    tenant = Tenant.objects.create(
        slug=f"fence-{uuid.uuid4().hex[:8]}", name="Fenced", dedicated_workers=True
    )
    make_agent(tenant, model)
    # In a test transaction on_commit never fires, so no Celery message is sent.
    return services.submit_message(
        tenant=tenant, session_key="agent:ops:main", content="hello"
    ).turn


@pytest.mark.django_db
def test_a_worker_whose_lease_was_taken_over_cannot_write(queued_turn):
    turn = queued_turn
    zombie = Lease(turn.tenant_id, turn.session_id)
    assert zombie.acquire()
    successor: Lease | None = None
    try:
        assert fenced.start_turn(turn, zombie.fence)
        step = Message(
            role=MessageRole.ASSISTANT,
            content="",
            tool_calls=[{"id": "c1", "name": "calculator", "arguments": "{}"}],
        )
        fenced.append(turn, zombie.fence, [step], iterations=1)  # fine while it holds it

        # Its worker froze past the lease (a frozen worker's keeper renews nothing: this
        # process's keeper thread, started by earlier tests, must not renew it either);
        # another worker takes the session over.
        keeper.forget(zombie)
        redis.Redis.from_url(settings.REDIS_URL).delete(zombie.key)
        successor = Lease(turn.tenant_id, turn.session_id)
        assert successor.acquire()
        assert successor.fence > zombie.fence
        before = _snapshot(turn)

        zombie_answer = Message(role=MessageRole.ASSISTANT, content="zombie answer")
        with pytest.raises(LeaseLost):
            fenced.append(turn, zombie.fence, [zombie_answer], iterations=2)
        with pytest.raises(LeaseLost):
            fenced.finish(
                turn,
                zombie.fence,
                status=TurnStatus.SUCCEEDED,
                messages=[Message(role=MessageRole.ASSISTANT, content="zombie answer")],
            )
        with pytest.raises(LeaseLost):
            fenced.requeue(turn, zombie.fence)
        with pytest.raises(LeaseLost):
            fenced.start_turn(Turn.objects.get(pk=turn.pk), zombie.fence)

        assert _snapshot(turn) == before  # not one row written or changed
        assert not Message.objects.filter(content="zombie answer").exists()
        # It also learns at its next renewal, and stops at its next step boundary.
        assert zombie.renew() is False
        keeper.track(zombie)  # it wakes up: its keeper renews again, and finds it taken
        keeper.renew_all()
        with pytest.raises(LeaseLost):
            zombie.check()

        # The new holder resumes the turn and finishes it.
        resumed = Turn.objects.get(pk=turn.pk)
        assert fenced.start_turn(resumed, successor.fence)
        fenced.finish(
            resumed,
            successor.fence,
            status=TurnStatus.SUCCEEDED,
            messages=[Message(role=MessageRole.ASSISTANT, content="the answer")],
        )
        resumed.refresh_from_db()
        assert (resumed.status, resumed.attempts, resumed.iterations) == ("succeeded", 2, 1)
        assert [(role, content) for _, role, content in conversation("agent:ops:main")] == [
            ("user", "hello"),
            ("assistant", ""),
            ("assistant", "the answer"),
        ]
    finally:
        zombie.release()
        if successor is not None:
            successor.release()


@pytest.mark.django_db
def test_the_database_fence_wins_even_if_redis_still_names_the_old_holder(queued_turn):
    """E.g. a Redis that lost the lease and re-granted it: the token is the arbiter."""
    turn = queued_turn
    holder = Lease(turn.tenant_id, turn.session_id)
    assert holder.acquire()
    try:
        assert fenced.start_turn(turn, holder.fence)
        claim_fence(turn.session_id)  # someone else claimed the session in the database

        with pytest.raises(LeaseLost):
            fenced.finish(
                turn,
                holder.fence,
                status=TurnStatus.SUCCEEDED,
                messages=[Message(role=MessageRole.ASSISTANT, content="too late")],
            )
        assert Turn.objects.get(pk=turn.pk).status == "running"
        assert not Message.objects.filter(role="assistant").exists()
    finally:
        holder.release()


@pytest.mark.django_db(transaction=True)
def test_a_frozen_worker_that_wakes_after_a_takeover_writes_nothing(stack, ops, model, callers):
    frozen: dict = {}

    def freeze_the_first_caller(record: dict) -> None:
        if not frozen and record["pid"]:
            frozen.update(record)
            os.kill(record["pid"], signal.SIGSTOP)  # a GC pause, a VM stall, a swap storm

    callers.callbacks.append(freeze_the_first_caller)
    # The frozen worker's answer arrives while it is stopped: it holds it when it wakes.
    model.add_rule(match=r"question", reply="stale answer", latency=1.0, times=1)
    model.add_rule(match=r"question", reply="fresh answer", latency=2.0)
    stack.start(web=True, workers=("a", "b"), beat=True)

    turn_id = stack.send("agent:ops:main", "the question")["turn"]["id"]
    # The lease runs out; the reaper hands the turn to the other worker, which asks again.
    wait_until(lambda: len(model.requests) >= 2, timeout=30, message="the takeover's call")
    zombie = frozen["worker"]
    taker = model.requests[1]["worker"]
    assert taker is not None and taker != zombie
    os.kill(frozen["pid"], signal.SIGCONT)  # wakes while the new holder's call is in flight

    turn = wait_for_turns([turn_id], timeout=30)[turn_id]
    # The zombie has woken, seen its answer and given up: it runs nothing any more.
    wait_until(lambda: not stack.active_tasks(zombie), timeout=15, message="the zombie to stop")

    assert turn.status == "succeeded"
    assert turn.attempts == 2
    assert answers_per_turn([turn_id]) == {turn_id: 1}
    assert [(role, content) for _, role, content in conversation("agent:ops:main")] == [
        ("user", "the question"),
        ("assistant", "fresh answer"),
    ]
    assert not Message.objects.filter(content="stale answer").exists()
    assert stack.workers[zombie].alive()  # it stopped the turn, not itself
    assert [r["worker"] for r in model.requests] == [zombie, taker]


@pytest.mark.django_db
def test_a_worker_that_lost_the_lease_cannot_mark_a_started_turn_as_waiting(queued_turn):
    turn = queued_turn
    zombie = Lease(turn.tenant_id, turn.session_id)
    assert zombie.acquire()
    zombie_fence = zombie.fence
    try:
        # The session is claimed anew and the turn started while the zombie was refused
        # a concurrency slot for it.
        successor_fence = claim_fence(turn.session_id)
        assert fenced.start_turn(Turn.objects.get(pk=turn.pk), successor_fence)
        before = _snapshot(turn)

        with pytest.raises(LeaseLost):
            fenced.park_queued(turn, zombie_fence, waiting_reason="concurrency_limit")

        assert _snapshot(turn) == before
        assert Turn.objects.get(pk=turn.pk).waiting_reason == ""
        # Even the current holder cannot mark a turn that is no longer queued.
        assert not fenced.park_queued(turn, successor_fence, waiting_reason="concurrency_limit")
        assert Turn.objects.get(pk=turn.pk).waiting_reason == ""
    finally:
        zombie.release()


@pytest.mark.django_db
def test_a_queued_turn_refused_a_slot_says_it_waits_for_one(queued_turn):
    holder = Lease(queued_turn.tenant_id, queued_turn.session_id)
    assert holder.acquire()
    try:
        assert fenced.park_queued(queued_turn, holder.fence, waiting_reason="concurrency_limit")
        assert Turn.objects.get(pk=queued_turn.pk).waiting_reason == "concurrency_limit"
    finally:
        holder.release()
