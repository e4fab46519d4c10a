"""The offline demo model: deterministic answers and tool calls, no network, no database."""

from __future__ import annotations

import json

from agents.providers import get_provider
from agents.providers.base import ChatMessage, ToolSpec
from tests.agents.providers.test_wire_formats import CALCULATOR, ask


def test_offline_calls_the_calculator_then_answers_with_its_result():
    provider = get_provider("offline")
    request = ask("calculate (2+3)*4", tools=[CALCULATOR])

    first = provider.complete(request)

    [call] = first.tool_calls
    assert (call.name, json.loads(call.arguments)) == ("calculator", {"expression": "(2+3)*4"})
    request.messages += [
        ChatMessage("assistant", tool_calls=[call]),
        ChatMessage("tool", content="20", tool_call_id=call.id, name="calculator"),
    ]
    deltas: list[str] = []
    final = provider.complete(request, on_delta=deltas.append)

    assert final.content == "The result is 20."
    assert "".join(deltas) == final.content
    assert final.tool_calls == []


def test_offline_echoes_a_plain_message_word_by_word():
    deltas: list[str] = []

    response = get_provider("offline").complete(ask("good morning"), on_delta=deltas.append)

    assert response.content.startswith('You said: "good morning".')
    assert "OPENAI_API_KEY" in response.content
    assert len(deltas) > 3
    assert "".join(deltas) == response.content
    assert response.usage.input_tokens > 0
    assert response.usage.output_tokens > 0


def test_offline_uses_time_and_memory_tools_only_when_offered():
    provider = get_provider("offline")
    memory = ToolSpec("session_memory", "Remember things.", {"type": "object"})
    clock = ToolSpec("current_time", "The time.", {"type": "object"})

    [remember] = provider.complete(ask("Remember my name is Ada", tools=[memory])).tool_calls
    [recall] = provider.complete(ask("What is my name?", tools=[memory])).tool_calls
    [time_call] = provider.complete(ask("what time is it?", tools=[clock])).tool_calls
    untooled = provider.complete(ask("what is 12*7"))

    assert json.loads(remember.arguments) == {"action": "set", "key": "name", "value": "Ada"}
    assert json.loads(recall.arguments) == {"action": "get", "key": "name"}
    assert (time_call.name, time_call.arguments) == ("current_time", "{}")
    assert untooled.tool_calls == []
