"""Bad input gets a 4xx with its own code and writes nothing."""

import pytest

from agents.models import Message, Session, Turn
from tests.factories import AgentFactory, TurnFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def ops(acme):
    return AgentFactory(tenant=acme.tenant, slug="ops")


def post(acme, key, body):
    return acme.client.post(f"/api/v1/sessions/{key}/messages", body, format="json")


@pytest.mark.parametrize(
    ("key", "body", "status", "code"),
    [
        ("agent:ops:main", {}, 400, "invalid_content"),
        ("agent:ops:main", {"content": ""}, 400, "empty_content"),
        ("agent:ops:main", {"content": "   "}, 400, "empty_content"),
        ("agent:ops:main", {"content": 5}, 400, "invalid_content"),
        ("agent:ops:main", {"content": "hi", "mode": "shout"}, 400, "invalid_mode"),
        ("agent:ops:main", {"content": "hi", "wait": 61}, 400, "invalid_wait"),
        ("agent:ops:main", {"content": "hi", "wait": -1}, 400, "invalid_wait"),
        ("agent:ops:main", {"content": "hi", "wait": "soon"}, 400, "invalid_wait"),
        ("ops:main", {"content": "hi"}, 400, "invalid_session_key"),
        ("agent:ops:", {"content": "hi"}, 400, "invalid_session_key"),
        ("agent:OPS:main", {"content": "hi"}, 400, "invalid_session_key"),
        ("agent:ops:" + "x" * 201, {"content": "hi"}, 400, "invalid_session_key"),
        ("agent:ops:has space", {"content": "hi"}, 400, "invalid_session_key"),
        ("agent:nobody:main", {"content": "hi"}, 404, "agent_not_found"),
    ],
)
def test_bad_submissions_are_refused_and_nothing_is_written(acme, ops, key, body, status, code):
    response = post(acme, key, body)

    assert response.status_code == status, response.json()
    assert response.json()["error"]["code"] == code
    assert not Session.objects.exists()
    assert not Message.objects.exists()
    assert not Turn.objects.exists()


def test_content_over_the_size_limit_is_413(acme, ops, settings):
    settings.MESSAGE_MAX_BYTES = 1000

    response = post(acme, "agent:ops:main", {"content": "é" * 501})

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "content_too_large"
    assert not Message.objects.exists()


def test_a_deleted_agent_takes_no_messages_but_its_history_stays(acme, ops):
    TurnFactory(tenant=acme.tenant, session_key="agent:ops:main", content="hi")

    assert acme.client.delete("/api/v1/agents/ops").status_code == 204

    response = post(acme, "agent:ops:main", {"content": "hello?"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "agent_not_found"
    assert acme.client.get("/api/v1/sessions/agent:ops:main").status_code == 200
    assert acme.client.get("/api/v1/agents/ops").status_code == 404


def test_an_unused_agent_is_deleted_for_good(acme, ops):
    assert acme.client.delete("/api/v1/agents/ops").status_code == 204
    recreated = acme.client.post("/api/v1/agents", {"slug": "ops"}, format="json")
    assert recreated.status_code == 201


def test_agent_slugs_are_unique_per_tenant(acme, ops):
    response = acme.client.post("/api/v1/agents", {"slug": "ops"}, format="json")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "agent_exists"


def test_unknown_tools_are_refused_with_the_list_of_known_ones(acme):
    response = acme.client.post(
        "/api/v1/agents", {"slug": "x", "tools": ["calculator", "launch_missiles"]}, format="json"
    )
    assert response.status_code == 400
    assert "launch_missiles" in str(response.json()["error"]["details"]["tools"])


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/v1/sessions/%00"),
        ("get", "/api/v1/sessions/agent:ops:a%00b"),
        ("post", "/api/v1/sessions/agent:ops:a%00b/reset"),
        ("get", "/api/v1/sessions/agent:ops:a%00b/messages"),
        ("post", "/api/v1/sessions/agent:ops:a%00b/messages"),
        ("get", "/api/v1/sessions/agent:ops:a%00b/events"),
        ("get", "/api/v1/sessions/agent:ops:line%0Abreak"),
        ("get", "/api/v1/sessions/agent:ops:" + "x" * 300),
    ],
)
def test_a_session_key_with_control_characters_is_a_json_404(acme, ops, method, path):
    response = getattr(acme.client, method)(path, {"content": "hi"}, format="json")

    assert response.status_code == 404, response.content
    assert response.json()["error"]["code"] == "not_found"
    assert not Message.objects.exists()


@pytest.mark.parametrize(
    ("path", "body", "code"),
    [
        ("/api/v1/sessions/agent:ops:main/messages", {"content": "a\u0000b"}, "invalid_content"),
        ("/api/v1/agents", {"slug": "x", "system_prompt": "a\u0000b"}, "validation_error"),
        ("/api/v1/agents", {"slug": "x", "model": "a\u0000b"}, "validation_error"),
        ("/api/v1/agents", {"slug": "x", "tools": ["a\u0000b"]}, "validation_error"),
        (
            "/api/v1/cron-jobs",
            {
                "agent": "ops",
                "session_key": "agent:ops:a\u0000b",
                "message": "hi",
                "schedule": {"every_seconds": 60},
            },
            "validation_error",
        ),
    ],
)
def test_a_nul_character_in_a_json_string_is_a_400(acme, ops, path, body, code):
    response = acme.client.post(path, body, format="json")

    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == code
    assert not Message.objects.exists()


BAD_EVENT_IDS = ["abc", "$", "1-", "-1", "1-0-0", "1-0x", "99999999999999999999-0"]


@pytest.mark.parametrize(
    ("query", "headers"),
    [(f"?last_event_id={bad}", {}) for bad in [*BAD_EVENT_IDS, "1-0%0Aevent:%20turn.finished"]]
    + [("", {"Last-Event-ID": bad}) for bad in BAD_EVENT_IDS],
)
def test_a_bad_last_event_id_is_a_400_on_both_event_streams(acme, ops, query, headers):
    turn = TurnFactory(tenant=acme.tenant, session_key="agent:ops:main", content="hi")
    for path in (
        f"/api/v1/turns/{turn.pk}/events",
        "/api/v1/sessions/agent:ops:main/events",
    ):
        response = acme.client.get(path + query, headers=headers)

        assert response.status_code == 400, response.content
        assert response.json()["error"]["code"] == "invalid_last_event_id"
