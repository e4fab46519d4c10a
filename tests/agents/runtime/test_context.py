"""The history sent to the model fits the agent's token budget."""

from agents.models import Agent, Message
from agents.runtime.context import build_context


def message(role, content, **extra):
    return Message(role=role, content=content, **extra)


def test_the_system_prompt_is_always_kept_and_old_messages_are_dropped():
    agent = Agent(system_prompt="You are terse.", context_token_budget=300)
    history = [
        message("user" if i % 2 == 0 else "assistant", f"{i} " + "x" * 200) for i in range(20)
    ]

    context = build_context(agent, history)

    assert context[0].role == "system"
    assert context[0].content.startswith("You are terse.")
    assert "omitted" in context[0].content
    kept = context[1:]
    assert 0 < len(kept) < 20
    assert kept[-1].content == history[-1].content  # the newest message is never dropped


def test_a_tool_result_is_never_kept_without_the_call_that_asked_for_it():
    agent = Agent(system_prompt="", context_token_budget=256)
    call = {"id": "c1", "name": "calculator", "arguments": "{}"}
    history = [
        message("user", "x" * 2000),
        message("assistant", "", tool_calls=[call]),
        message("tool", "42", tool_call_id="c1", name="calculator"),
        message("assistant", "It is 42."),
        message("user", "thanks"),
    ]

    context = build_context(agent, history)

    roles = [m.role for m in context if m.role != "system"]
    assert roles[0] != "tool"
    assert roles[-1] == "user"


def test_a_short_history_is_sent_whole():
    agent = Agent(system_prompt="Hi", context_token_budget=16_000)
    history = [message("user", "one"), message("assistant", "two"), message("user", "three")]

    context = build_context(agent, history)

    assert [m.content for m in context] == ["Hi", "one", "two", "three"]
