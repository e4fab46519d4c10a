"""Turns run one at a time per session, in order, as real Celery tasks."""

import pytest

from agents.models import Turn
from tests.support import conversation, send, wait_for_turn

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("worker")]


def test_messages_to_one_session_are_answered_in_order(acme, agent, model):
    key = "agent:ops:main"
    turn_ids = [send(acme, key, f"message {i}")["turn"]["id"] for i in range(20)]

    for turn_id in turn_ids:
        assert wait_for_turn(turn_id).status == "succeeded"

    history = conversation(key)
    assert [seq for seq, _, _ in history] == list(range(1, 41))  # gap-free
    expected = []
    for i in range(20):
        expected += [("user", f"message {i}"), ("assistant", f"echo: message {i}")]
    assert [(role, content) for _, role, content in history] == expected

    # The model saw each conversation prefix in order: call i ends with message i and
    # carries every earlier exchange before it.
    calls = [r for r in model.requests if r["format"] == "openai"]
    assert len(calls) == 20
    for i, call in enumerate(calls):
        said = [(m["role"], m["content"]) for m in call["messages"] if m["role"] != "system"]
        assert said == expected[: 2 * i + 1]


def test_two_sessions_of_one_agent_progress_at_the_same_time(acme, agent, model):
    model.add_rule(match=r"^slow", latency=1.5)

    first = send(acme, "agent:ops:one", "slow one")["turn"]["id"]
    second = send(acme, "agent:ops:two", "slow two")["turn"]["id"]

    assert wait_for_turn(first).status == "succeeded"
    assert wait_for_turn(second).status == "succeeded"
    a, b = model.requests[0], model.requests[1]
    assert a["started_at"] < b["finished_at"] and b["started_at"] < a["finished_at"]
    assert model.max_concurrent >= 2


def test_a_session_is_created_on_the_first_message_and_reused(acme, agent):
    first = send(acme, "agent:ops:main", "hello")
    second = send(acme, "agent:ops:main", "again")

    wait_for_turn(second["turn"]["id"])
    assert first["turn"]["session"] == second["turn"]["session"] == "agent:ops:main"
    assert Turn.objects.filter(session__key="agent:ops:main").count() == 2
    session = acme.client.get("/api/v1/sessions/agent:ops:main").json()
    assert session["agent"] == "ops"
    assert session["message_count"] == 4
