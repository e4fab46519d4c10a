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
