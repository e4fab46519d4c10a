"""Whole turns on each provider (Anthropic's wire format, the offline demo model), and what
provider failures do to a turn and its session."""

import pytest
from django.core.management import call_command

from tests.factories import AgentFactory, ProviderCredentialFactory
from tests.support import conversation, send, wait_for_turn

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("worker")]


def test_a_turn_on_the_anthropic_provider(acme, model):
    ProviderCredentialFactory(
        tenant=acme.tenant, provider="anthropic", api_key="k", base_url=model.url_anthropic
    )
    AgentFactory(tenant=acme.tenant, slug="claude", provider="anthropic", model="c-1")

    turn = wait_for_turn(send(acme, "agent:claude:main", "bonjour")["turn"]["id"])

    assert turn.status == "succeeded"
    assert model.requests[0]["format"] == "anthropic"
    assert model.requests[0]["headers"]["x-api-key"] == "k"
    assert conversation("agent:claude:main")[-1][2] == "echo: bonjour"
    assert turn.input_tokens > 0 and turn.output_tokens > 0


def test_a_429_is_retried_and_the_turn_succeeds(acme, agent, model):
    model.add_rule(match=r".*", status=429, headers={"Retry-After": "0"}, times=1)

    turn = wait_for_turn(send(acme, "agent:ops:main", "hello")["turn"]["id"])

    assert turn.status == "succeeded"
    assert model.call_count == 2
    assert conversation("agent:ops:main")[-1][2] == "echo: hello"


def test_a_401_fails_the_turn_with_provider_auth_failed_and_the_next_turn_runs(acme, agent, model):
    model.add_rule(match=r".*", status=401, times=1)

    failed = wait_for_turn(send(acme, "agent:ops:main", "first")["turn"]["id"])
    assert failed.status == "failed"
    assert failed.error_code == "provider_auth_failed"
    assert model.call_count == 1  # an auth failure is not retried

    after = wait_for_turn(send(acme, "agent:ops:main", "second")["turn"]["id"])
    assert after.status == "succeeded"
    body = acme.client.get(f"/api/v1/turns/{failed.pk}").json()
    assert body["error"]["code"] == "provider_auth_failed"


def test_a_garbage_answer_fails_with_provider_bad_response_and_the_session_keeps_working(
    acme, agent, model
):
    model.add_rule(match=r".*", body="<html>not json</html>", times=1)

    failed = wait_for_turn(send(acme, "agent:ops:main", "first")["turn"]["id"])
    after = wait_for_turn(send(acme, "agent:ops:main", "second")["turn"]["id"])

    assert (failed.status, failed.error_code) == ("failed", "provider_bad_response")
    assert after.status == "succeeded"


def test_the_offline_model_uses_the_calculator_without_any_network(acme):
    AgentFactory(tenant=acme.tenant, slug="demo", tools=["calculator"])

    turn = wait_for_turn(send(acme, "agent:demo:main", "what is 12*7?")["turn"]["id"])

    assert turn.status == "succeeded"
    roles = [role for _, role, _ in conversation("agent:demo:main")]
    assert roles == ["user", "assistant", "tool", "assistant"]
    assert "84" in conversation("agent:demo:main")[-1][2]


def test_the_offline_model_remembers_with_session_memory(acme):
    AgentFactory(tenant=acme.tenant, slug="demo", tools=["session_memory"])

    send(acme, "agent:demo:main", "Remember my name is Ada")
    turn = wait_for_turn(send(acme, "agent:demo:main", "What is my name?")["turn"]["id"])

    assert turn.status == "succeeded"
    assert conversation("agent:demo:main")[-1][2] == "Name is Ada."


def test_the_chat_command_prints_the_streamed_reply_and_the_tool_calls(acme, capsys):
    AgentFactory(tenant=acme.tenant, slug="demo", tools=["calculator"])

    call_command(
        "chat", "agent:demo:cli", "calculate (2+3)*4", "--tenant", "acme", "--timeout", "30"
    )

    out, err = capsys.readouterr()
    assert "20" in out
    assert "calculator" in err


def test_the_offline_model_delegates_to_another_agent_when_asked(acme):
    AgentFactory(tenant=acme.tenant, slug="assistant", tools=["calculator"])
    AgentFactory(tenant=acme.tenant, slug="boss", tools=["spawn_agent"])

    sent = send(acme, "agent:boss:main", "Ask assistant: What is 12*7?")
    turn = wait_for_turn(sent["turn"]["id"], timeout=60)

    assert turn.status == "succeeded"
    assert conversation("agent:boss:main")[-1][2] == "assistant answered: The result is 84."
    assert turn.children.get().session.key.startswith("agent:assistant:sub:")


def test_a_key_saved_between_turns_is_the_one_the_next_turn_sends(acme, globex, agent, model):
    # The worker keeps decrypted keys in memory: a key saved in the web must still reach
    # the very next turn, and each tenant's turn must send that tenant's own key.
    ProviderCredentialFactory(tenant=globex.tenant, api_key="sk-globex", base_url=model.url_openai)
    AgentFactory(tenant=globex.tenant, slug="ops", provider="openai", model="fake-1")

    assert wait_for_turn(send(acme, "agent:ops:main", "one")["turn"]["id"]).status == "succeeded"
    response = acme.client.put(
        "/api/v1/providers/openai",
        {"api_key": "sk-rotated", "base_url": model.url_openai},
        format="json",
    )
    assert response.status_code == 200, response.json()
    assert wait_for_turn(send(acme, "agent:ops:main", "two")["turn"]["id"]).status == "succeeded"
    assert wait_for_turn(send(globex, "agent:ops:main", "three")["turn"]["id"]).status == (
        "succeeded"
    )

    keys = [r["headers"]["authorization"] for r in model.requests]
    assert keys == ["Bearer sk-test", "Bearer sk-rotated", "Bearer sk-globex"]
