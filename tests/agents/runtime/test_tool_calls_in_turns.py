"""Tool calls inside a turn: results go back to the model, errors too, and a turn that
never stops calling tools ends."""

import pytest

from agents.models import Message
from tests.support import make_agent, send, wait_for_turn

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("worker")]

KEY = "agent:calc:main"


@pytest.fixture
def calc_agent(acme, model):
    return make_agent(acme.tenant, model, slug="calc", tools=["calculator", "current_time"])


def test_the_model_calls_the_calculator_and_answers_with_its_result(acme, calc_agent, model):
    model.add_rule(
        match=r"what is 6\*7",
        tool_calls=[{"name": "calculator", "arguments": {"expression": "6*7"}}],
    )

    turn = wait_for_turn(send(acme, KEY, "what is 6*7?")["turn"]["id"])

    assert turn.status == "succeeded"
    assert turn.iterations == 2
    messages = list(Message.objects.filter(session__key=KEY).order_by("seq"))
    assert [m.role for m in messages] == ["user", "assistant", "tool", "assistant"]
    call = messages[1].tool_calls[0]
    assert call["name"] == "calculator"
    assert messages[2].tool_call_id == call["id"]
    assert messages[2].content == "42"
    assert messages[3].content == "tool said: 42"
    # The second model call carried the tool result back.
    tool_messages = [m for m in model.requests[1]["messages"] if m["role"] == "tool"]
    assert tool_messages and tool_messages[0]["content"] == "42"
    # History over the API shows the tool exchange too.
    history = acme.client.get(f"/api/v1/sessions/{KEY}/messages").json()["results"]
    assert [m["role"] for m in history] == ["user", "assistant", "tool", "assistant"]


def test_a_tool_error_goes_back_to_the_model_and_the_turn_goes_on(acme, calc_agent, model):
    model.add_rule(
        match=r"^divide", tool_calls=[{"name": "calculator", "arguments": {"expression": "1/0"}}]
    )
    model.add_rule(match=r"^use an unknown", tool_calls=[{"name": "rm_rf", "arguments": {}}])

    divide = wait_for_turn(send(acme, KEY, "divide by zero")["turn"]["id"])
    unknown = wait_for_turn(send(acme, KEY, "use an unknown tool")["turn"]["id"])

    assert divide.status == unknown.status == "succeeded"
    tools = list(
        Message.objects.filter(role="tool").order_by("seq").values_list("content", flat=True)
    )
    assert tools[0].startswith("error: tool_error")
    assert tools[1].startswith("error: unknown_tool")


def test_an_agent_that_never_stops_calling_tools_fails_after_max_iterations(
    acme, calc_agent, model
):
    calc_agent.max_iterations = 3
    calc_agent.save()
    model.add_rule(match=r".*", tool_calls=[{"name": "current_time", "arguments": {}}])

    turn = wait_for_turn(send(acme, KEY, "loop forever")["turn"]["id"])

    assert (turn.status, turn.error_code) == ("failed", "max_iterations_exceeded")
    assert model.call_count == 3
