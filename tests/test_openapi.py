import re
from html.parser import HTMLParser
from urllib.parse import urlsplit

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


def served_schema() -> dict:
    return Client().get("/api/schema/", HTTP_ACCEPT="application/json").json()


def operations(schema: dict):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            yield path, method.upper(), operation


def error_body_of(schema: dict, response: dict) -> dict:
    """The JSON schema of an error answer, following a `#/components/responses` ref."""
    if "$ref" in response:
        response = schema["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    return response["content"]["application/json"]["schema"]


def test_every_operation_documents_the_errors_it_can_answer_with_the_error_body():
    schema = served_schema()
    for path, method, operation in operations(schema):
        responses = operation["responses"]
        parameters = operation.get("parameters", [])
        security = operation.get("security", [])
        expected = {"503"}
        if security and {} not in security:  # credentials required
            expected |= {"401", "403"}
        if security == [{"ApiKey": []}]:
            expected.add("429")  # tenant calls are throttled per API key
        if any(p["in"] == "path" for p in parameters):
            expected.add("404")
        if "requestBody" in operation or any(p["in"] == "query" for p in parameters):
            expected.add("400")
        if "requestBody" in operation:
            expected |= {"413", "415"}
        missing = expected - set(responses)
        assert not missing, f"{method} {path} does not document {sorted(missing)}"
        for status in expected:
            body = error_body_of(schema, responses[status])
            assert body == {"$ref": "#/components/schemas/ErrorResponse"}, (method, path, status)


def test_the_error_body_is_the_one_the_api_sends():
    schema = served_schema()
    envelope = schema["components"]["schemas"]["ErrorResponse"]
    error = schema["components"]["schemas"]["Error"]
    assert envelope["required"] == ["error"]
    assert set(error["required"]) == {"code", "message"}
    assert set(error["properties"]) == {"code", "message", "details"}

    response = Client().get("/api/v1/agents")
    assert response.status_code == 401
    assert set(response.json()) == {"error"}
    assert set(response.json()["error"]) <= set(error["properties"])


def test_operations_with_a_conflict_document_their_409():
    paths = served_schema()["paths"]
    assert "409" in paths["/api/v1/agents"]["post"]["responses"]
    assert "409" in paths["/api/v1/sessions/{key}/messages"]["post"]["responses"]
    assert "409" in paths["/api/v1/sessions/{key}/reset"]["post"]["responses"]
    assert "409" in paths["/api/v1/sessions/{key}"]["delete"]["responses"]
    assert "409" in paths["/api/v1/turns/{turn_id}/cancel"]["post"]["responses"]


def test_fields_the_api_returns_as_null_are_nullable_in_the_schema():
    schemas = served_schema()["components"]["schemas"]
    assert schemas["Session"]["properties"]["parent"]["nullable"] is True
    assert schemas["Message"]["properties"]["turn_id"]["nullable"] is True


def test_the_history_is_documented_as_the_paged_object_it_is():
    operation = served_schema()["paths"]["/api/v1/sessions/{key}/messages"]["get"]
    body = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/PaginatedMessageList"}
    assert {"cursor", "limit"} <= {p["name"] for p in operation["parameters"]}


def test_event_streams_document_each_event_and_its_data():
    schema = served_schema()
    for path in ["/api/v1/turns/{turn_id}/events", "/api/v1/sessions/{key}/events"]:
        responses = schema["paths"][path]["get"]["responses"]
        stream = responses["200"]["content"]["text/event-stream"]
        events = stream["x-events"]
        assert {"turn.queued", "message.delta", "turn.failed", "turn.finished"} <= set(events)
        for ref in events.values():
            assert ref["$ref"].rsplit("/", 1)[1] in schema["components"]["schemas"]
        assert "429" in responses  # too_many_streams


class _Assets(HTMLParser):
    """The addresses a page loads: src= and href= of its tags."""

    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]


def test_the_docs_load_everything_from_this_server_so_they_work_offline(settings, tmp_path):
    # As `make run` and the image serve them: collected, then served by whitenoise.
    settings.STATIC_ROOT = tmp_path
    call_command("collectstatic", "--noinput", "--verbosity", "0")
    client = Client()  # a new handler: whitenoise reads STATIC_ROOT when it starts

    page = client.get("/api/docs/")

    assert page.status_code == 200
    html = page.content.decode()
    parser = _Assets()
    parser.feed(html)
    assert parser.urls, html
    assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}", html, re.IGNORECASE), html
    for url in parser.urls:
        assert urlsplit(url).netloc == "" and url.startswith("/"), url
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert b"".join(asset.streaming_content if asset.streaming else [asset.content])
    scripts = [url for url in parser.urls if url.endswith(".js")]
    assert any("swagger-ui-bundle" in url for url in scripts), scripts
