"""Another tenant's agents, sessions and turns are invisible: 404, never 403."""

import pytest

from agents.models import Agent, Session, Turn
from beamclaw.telemetry import emit
from tests.factories import AgentFactory, TurnFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def globex_objects(globex):
    agent = AgentFactory(tenant=globex.tenant, slug="secret")
    turn = TurnFactory(tenant=globex.tenant, session_key="agent:secret:main", content="classified")
    return agent, turn.session, turn


def test_every_endpoint_answers_404_for_another_tenants_objects(acme, globex_objects):
    agent, session, turn = globex_objects
    key = session.key
    calls = [
        ("get", f"/api/v1/agents/{agent.slug}"),
        ("patch", f"/api/v1/agents/{agent.slug}"),
        ("put", f"/api/v1/agents/{agent.slug}"),
        ("delete", f"/api/v1/agents/{agent.slug}"),
        ("get", f"/api/v1/sessions/{key}"),
        ("delete", f"/api/v1/sessions/{key}"),
        ("post", f"/api/v1/sessions/{key}/reset"),
        ("get", f"/api/v1/sessions/{key}/messages"),
        ("post", f"/api/v1/sessions/{key}/messages"),
        ("get", f"/api/v1/sessions/{key}/events"),
        ("get", f"/api/v1/turns/{turn.pk}"),
        ("post", f"/api/v1/turns/{turn.pk}/cancel"),
        ("get", f"/api/v1/turns/{turn.pk}/events"),
    ]
    for method, url in calls:
        response = getattr(acme.client, method)(url, {"content": "hi"}, format="json")
        assert response.status_code == 404, (method, url, response.status_code)
        assert response.json()["error"]["code"].endswith("not_found"), (method, url)

    # Nothing of globex's changed, and acme got no session out of it.
    assert Agent.objects.filter(pk=agent.pk, deleted_at__isnull=True).exists()
    assert Turn.objects.get(pk=turn.pk).status == "queued"
    assert not Session.objects.filter(tenant=acme.tenant).exists()


def test_lists_only_show_the_callers_rows(acme, globex_objects):
    AgentFactory(tenant=acme.tenant, slug="mine")
    TurnFactory(tenant=acme.tenant, session_key="agent:mine:main", content="hi")

    agent, _, turn = globex_objects
    emit(
        "provider.call",
        tenant_id=agent.tenant_id,
        tenant="globex",
        agent_id=agent.pk,
        agent=agent.slug,
        turn_id=turn.pk,
        provider="openai",
        model="gpt-4o",
        input_tokens=900,
        output_tokens=100,
        latency_s=0.5,
        attempts=1,
        ok=True,
        error_code="",
    )

    agents = acme.client.get("/api/v1/agents").json()["results"]
    sessions = acme.client.get("/api/v1/sessions").json()["results"]
    usage = acme.client.get("/api/v1/usage", {"group_by": "model"}).json()

    assert [a["slug"] for a in agents] == ["mine"]
    assert [s["key"] for s in sessions] == ["agent:mine:main"]
    assert usage["groups"] == [] and usage["totals"]["calls"] == 0


def test_the_same_session_key_in_two_tenants_is_two_sessions(acme, globex_objects):
    AgentFactory(tenant=acme.tenant, slug="secret")

    response = acme.client.post(
        "/api/v1/sessions/agent:secret:main/messages", {"content": "mine"}, format="json"
    )

    assert response.status_code == 202
    assert Session.objects.filter(key="agent:secret:main").count() == 2
    history = acme.client.get("/api/v1/sessions/agent:secret:main/messages").json()
    assert all(m["content"] != "classified" for m in history["results"])
