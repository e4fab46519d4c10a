import pytest
from django.core.management import call_command
from django.test import Client

pytestmark = pytest.mark.django_db


def test_the_schema_generates_without_warnings(tmp_path):
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "s.yml"))


def test_every_api_endpoint_is_documented():
    schema = Client().get("/api/schema/", HTTP_ACCEPT="application/json").json()
    paths = set(schema["paths"])
    for path in [
        "/api/v1/tenant",
        "/api/v1/agents",
        "/api/v1/agents/{slug}",
        "/api/v1/sessions",
        "/api/v1/sessions/{key}",
        "/api/v1/sessions/{key}/messages",
        "/api/v1/sessions/{key}/reset",
        "/api/v1/sessions/{key}/events",
        "/api/v1/turns/{turn_id}",
        "/api/v1/turns/{turn_id}/cancel",
        "/api/v1/turns/{turn_id}/events",
        "/api/v1/providers/{provider}",
    ]:
        assert path in paths, path
    assert schema["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"


def test_the_browsable_docs_page_is_served():
    response = Client().get("/api/docs/")
    assert response.status_code == 200
    assert b"swagger" in response.content.lower()
