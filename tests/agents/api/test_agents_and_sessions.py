"""Agents, provider credentials and sessions over the API (no worker needed)."""

import pytest

from agents.models import ProviderCredential, Turn
from tests.factories import AgentFactory, TurnFactory

pytestmark = pytest.mark.django_db


def test_agents_are_created_read_updated_and_listed_with_cursor_pages(acme):
    for slug in ("a1", "a2", "a3"):
        response = acme.client.post(
            "/api/v1/agents",
            {"slug": slug, "system_prompt": "Be brief.", "tools": ["calculator"]},
            format="json",
        )
        assert response.status_code == 201, response.json()

    changed = acme.client.patch("/api/v1/agents/a2", {"max_iterations": 3}, format="json")
    assert changed.status_code == 200
    assert changed.json()["max_iterations"] == 3
    assert acme.client.get("/api/v1/agents/a2").json()["tools"] == ["calculator"]

    first = acme.client.get("/api/v1/agents?limit=2").json()
    assert len(first["results"]) == 2
    second = acme.client.get(first["next"]).json()
    slugs = [a["slug"] for a in first["results"] + second["results"]]
    assert sorted(slugs) == ["a1", "a2", "a3"]
    assert second["next"] is None


def test_an_agent_slug_cannot_be_changed(acme):
    AgentFactory(tenant=acme.tenant, slug="ops")
    response = acme.client.patch("/api/v1/agents/ops", {"slug": "other"}, format="json")
    assert response.status_code == 200
    assert response.json()["slug"] == "ops"


def test_provider_keys_are_write_only_and_encrypted_at_rest(acme):
    response = acme.client.put(
        "/api/v1/providers/openai",
        {"api_key": "sk-very-secret", "base_url": "https://1.1.1.1/v1"},
        format="json",
    )

    assert response.status_code == 200
    assert "sk-very-secret" not in response.content.decode()
    assert response.json()["has_api_key"] is True
    stored = ProviderCredential.objects.get(tenant=acme.tenant).api_key_encrypted
    assert stored and "sk-very-secret" not in stored
    listed = acme.client.get("/api/v1/providers").json()
    assert listed[0]["base_url"] == "https://1.1.1.1/v1"
    unknown = acme.client.put("/api/v1/providers/skynet", {"api_key": "x"}, format="json")
    assert unknown.status_code == 404


def test_the_session_list_shows_and_filters_which_sessions_have_a_turn_in_progress(acme):
    AgentFactory(tenant=acme.tenant, slug="ops")
    TurnFactory(tenant=acme.tenant, session_key="agent:ops:busy", content="hi")
    TurnFactory(tenant=acme.tenant, session_key="agent:ops:done", content="hi")
    Turn.objects.filter(session__key="agent:ops:done").update(status="succeeded")
    sessions = acme.client.get("/api/v1/sessions")

    assert {s["key"]: s["active"] for s in sessions.json()["results"]} == {
        "agent:ops:busy": True,
        "agent:ops:done": False,
    }
    for value, expected in (("true", ["agent:ops:busy"]), ("false", ["agent:ops:done"])):
        listed = acme.client.get(f"/api/v1/sessions?active={value}").json()["results"]
        assert [s["key"] for s in listed] == expected
    wrong = acme.client.get("/api/v1/sessions?active=maybe")
    assert wrong.status_code == 400
    assert wrong.json()["error"]["code"] == "invalid_session_filter"


def test_sessions_are_listed_filtered_reset_and_deleted(acme):
    AgentFactory(tenant=acme.tenant, slug="ops")
    AgentFactory(tenant=acme.tenant, slug="dev")
    TurnFactory(tenant=acme.tenant, session_key="agent:ops:one", content="hi")
    TurnFactory(tenant=acme.tenant, session_key="agent:dev:two", content="hi")

    by_agent = acme.client.get("/api/v1/sessions?agent=dev").json()["results"]
    assert [s["key"] for s in by_agent] == ["agent:dev:two"]
    busy = acme.client.get("/api/v1/sessions?active=true").json()["results"]
    assert len(busy) == 2

    # A session with a queued turn can't be reset; once it is cancelled it can.
    assert acme.client.post("/api/v1/sessions/agent:ops:one/reset").status_code == 409
    turn_id = Turn.objects.get(session__key="agent:ops:one").pk
    acme.client.post(f"/api/v1/turns/{turn_id}/cancel")
    reset = acme.client.post("/api/v1/sessions/agent:ops:one/reset")
    assert reset.status_code == 200
    assert reset.json()["message_count"] == 0
    idle = acme.client.get("/api/v1/sessions?active=false").json()["results"]
    assert [s["key"] for s in idle] == ["agent:ops:one"]

    assert acme.client.delete("/api/v1/sessions/agent:ops:one").status_code == 204
    assert acme.client.get("/api/v1/sessions/agent:ops:one").status_code == 404
