"""Whole turns on each provider: Anthropic's wire format, and the offline demo model."""

import pytest
from django.core.management import call_command

from agents import services
from tests.support import conversation, send, wait_for_turn

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("worker")]


def test_a_turn_on_the_anthropic_provider(acme, model):
    services.set_provider_credential(
        tenant=acme.tenant, provider="anthropic", api_key="k", base_url=model.url_anthropic
    )
    services.create_agent(tenant=acme.tenant, slug="claude", provider="anthropic", model="c-1")

    turn = wait_for_turn(send(acme, "agent:claude:main", "bonjour")["turn"]["id"])

    assert turn.status == "succeeded"
    assert model.requests[0]["format"] == "anthropic"
    assert model.requests[0]["headers"]["x-api-key"] == "k"
    assert conversation("agent:claude:main")[-1][2] == "echo: bonjour"
    assert turn.input_tokens > 0 and turn.output_tokens > 0


def test_the_offline_model_uses_the_calculator_without_any_network(acme):
    services.create_agent(tenant=acme.tenant, slug="demo", tools=["calculator"])

    turn = wait_for_turn(send(acme, "agent:demo:main", "what is 12*7?")["turn"]["id"])

    assert turn.status == "succeeded"
    roles = [role for _, role, _ in conversation("agent:demo:main")]
    assert roles == ["user", "assistant", "tool", "assistant"]
    assert "84" in conversation("agent:demo:main")[-1][2]


def test_the_offline_model_remembers_with_session_memory(acme):
    services.create_agent(tenant=acme.tenant, slug="demo", tools=["session_memory"])

    send(acme, "agent:demo:main", "Remember my name is Ada")
    turn = wait_for_turn(send(acme, "agent:demo:main", "What is my name?")["turn"]["id"])

    assert turn.status == "succeeded"
    assert conversation("agent:demo:main")[-1][2] == "Name is Ada."


def test_the_chat_command_prints_the_streamed_reply_and_the_tool_calls(acme, capsys):
    services.create_agent(tenant=acme.tenant, slug="demo", tools=["calculator"])

    call_command(
        "chat", "agent:demo:cli", "calculate (2+3)*4", "--tenant", "acme", "--timeout", "30"
    )

    out, err = capsys.readouterr()
    assert "20" in out
    assert "calculator" in err


def test_the_offline_model_delegates_to_another_agent_when_asked(acme):
    services.create_agent(tenant=acme.tenant, slug="assistant", tools=["calculator"])
    services.create_agent(tenant=acme.tenant, slug="boss", tools=["spawn_agent"])

    sent = send(acme, "agent:boss:main", "Ask assistant: What is 12*7?")
    turn = wait_for_turn(sent["turn"]["id"], timeout=60)

    assert turn.status == "succeeded"
    assert conversation("agent:boss:main")[-1][2] == "assistant answered: The result is 84."
    assert turn.children.get().session.key.startswith("agent:assistant:sub:")
