"""Redis (broker, leases, limiter) dies and comes back empty: every accepted turn is answered.

Web, worker and beat run against a private redis-server that the test kills with SIGKILL
and starts again on the same port without persistence (queues, leases and streams are
gone). The test itself only talks HTTP to the web process and reads the database.
"""

from __future__ import annotations

import time

import pytest

from agents.models import Turn
from tests.support import conversation, wait_until

from .conftest import answers_per_turn, not_succeeded, wait_for_turns

pytestmark = pytest.mark.django_db(transaction=True)

BUSY = [f"agent:ops:busy{s}" for s in range(4)]  # a backlog when Redis dies
IDLE = [f"agent:ops:idle{s}" for s in range(3)]  # first message while Redis is down


def test_every_accepted_message_is_answered_once_after_redis_restarts(
    stack, dedicated, private_redis, ops, model
):
    model.add_rule(latency=0.5)
    stack.start(web=True, workers=("a",), beat=True)
    sent: dict[str, list[tuple[int, str]]] = {key: [] for key in BUSY + IDLE}

    def submit(key: str, content: str) -> dict:
        body = stack.send(key, content)
        sent[key].append((body["turn"]["id"], content))
        return body

    def all_ids() -> list[int]:
        return [turn_id for turns in sent.values() for turn_id, _ in turns]

    def tenant_turns(status: str):
        return Turn.objects.filter(tenant=dedicated.tenant, status=status)

    for i in range(6):
        for key in BUSY:
            assert submit(key, f"{key[-5:]} m{i}")["delayed"] is False
    wait_until(
        lambda: (
            tenant_turns("succeeded").count() >= len(BUSY)
            and any(r["finished_at"] is None for r in model.requests)
        ),
        timeout=30,
        message="the first turns to finish while others wait on the model",
    )

    private_redis.kill()  # mid-call for some turns, with a backlog behind them
    # While Redis is down, messages are still accepted (stored) and flagged as delayed.
    for key in BUSY + IDLE:
        started = time.monotonic()
        body = submit(key, f"{key[-5:]} while down")
        assert body["delayed"] is True, body
        assert time.monotonic() - started < 10
    # The outage stalls the backlog: the running turns end their step, nothing new starts.
    wait_until(
        lambda: not tenant_turns("running").exists(),
        timeout=20,
        message="the turns running when Redis died to end their step",
    )
    stalled = tenant_turns("queued").count()
    assert stalled > len(BUSY + IDLE), stalled

    private_redis.start()  # same port, empty: no queue, no lease, no stream survived
    for key in BUSY:
        submit(key, f"{key[-5:]} after")

    turns = wait_for_turns(all_ids(), timeout=60)

    assert not_succeeded(turns) == []
    assert set(answers_per_turn(all_ids()).values()) == {1}
    for key, turns_of_session in sent.items():
        expected = []
        for _, content in turns_of_session:
            expected += [("user", content), ("assistant", f"echo: {content}")]
        history = conversation(key)
        assert [(role, content) for _, role, content in history] == expected, key
        assert [seq for seq, _, _ in history] == list(range(1, len(expected) + 1))
