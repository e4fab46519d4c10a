"""What a message does when it arrives while the session is busy: the four modes."""

import pytest

from agents.models import Message, Turn
from tests.support import conversation, send, wait_for_status, wait_for_turn

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("worker")]

KEY = "agent:ops:main"


def start_slow_turn(acme, model, latency: float = 1.5) -> int:
    model.add_rule(match=r"^slow", latency=latency)
    turn_id = send(acme, KEY, "slow start")["turn"]["id"]
    wait_for_status(turn_id, "running")
    return turn_id


def test_enqueue_runs_the_new_message_after_the_running_turn(acme, agent, model):
    running = start_slow_turn(acme, model)
    queued = send(acme, KEY, "next")["turn"]["id"]

    assert wait_for_turn(running).status == "succeeded"
    assert wait_for_turn(queued).status == "succeeded"
    assert [c for _, _, c in conversation(KEY)] == [
        "slow start",
        "echo: slow start",
        "next",
        "echo: next",
    ]


def test_collect_joins_waiting_messages_into_one_next_turn(acme, agent, model):
    running = start_slow_turn(acme, model)

    a = send(acme, KEY, "part a", mode="collect")
    b = send(acme, KEY, "part b", mode="collect")

    assert a["new_turn"] is True
    assert b["new_turn"] is False
    assert a["turn"]["id"] == b["turn"]["id"] != running
    assert wait_for_turn(a["turn"]["id"]).status == "succeeded"
    assert Turn.objects.filter(session__key=KEY).count() == 2
    last_call = model.requests[-1]["messages"]
    assert [m["content"] for m in last_call[-2:]] == ["part a", "part b"]
    assert conversation(KEY)[-1][2] == "echo: part b"


def test_interrupt_stops_the_running_turn_and_runs_the_new_one(acme, agent, model):
    running = start_slow_turn(acme, model)

    new = send(acme, KEY, "stop, do this", mode="interrupt")["turn"]["id"]

    interrupted = wait_for_turn(running)
    assert interrupted.status == "cancelled"
    assert interrupted.error_code == "interrupted"
    assert wait_for_turn(new).status == "succeeded"
    # The interrupted answer was dropped; the new turn saw the first message too.
    assert [c for _, _, c in conversation(KEY)] == [
        "slow start",
        "stop, do this",
        "echo: stop, do this",
    ]


def test_reject_refuses_with_409_and_writes_nothing(acme, agent, model):
    running = start_slow_turn(acme, model)
    before = Message.objects.count()

    response = acme.client.post(
        f"/api/v1/sessions/{KEY}/messages", {"content": "hi", "mode": "reject"}, format="json"
    )

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "session_busy"
    assert Message.objects.count() == before
    assert Turn.objects.count() == 1
    wait_for_turn(running)


def test_the_agent_sets_the_default_mode(acme, agent, model):
    agent.queue_mode = "reject"
    agent.save()
    running = start_slow_turn(acme, model)

    response = acme.client.post(
        f"/api/v1/sessions/{KEY}/messages", {"content": "hi"}, format="json"
    )

    assert response.status_code == 409
    wait_for_turn(running)


def test_cancel_stops_a_queued_turn_at_once_and_a_running_one_at_its_next_step(acme, agent, model):
    running = start_slow_turn(acme, model)
    queued = send(acme, KEY, "never mind")["turn"]["id"]

    response = acme.client.post(f"/api/v1/turns/{queued}/cancel")
    assert response.status_code == 202
    assert response.json()["status"] == "cancelled"
    response = acme.client.post(f"/api/v1/turns/{running}/cancel")
    assert response.status_code == 202
    assert response.json()["cancel_requested"] is True

    assert wait_for_turn(running).status == "cancelled"
    again = acme.client.post(f"/api/v1/turns/{running}/cancel")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "turn_not_cancellable"
    # The session still works afterwards.
    assert wait_for_turn(send(acme, KEY, "hello")["turn"]["id"]).status == "succeeded"
