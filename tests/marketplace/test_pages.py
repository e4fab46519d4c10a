"""The catalogue page people browse before they install: search finds a published
package, an unlisted one is not there, a yanked version is marked."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from .test_api import manifest, publish

pytestmark = pytest.mark.django_db


@pytest.fixture
def catalogue(acme):
    acme.client.put("/api/v1/publisher", {"handle": "words"}, format="json")
    publish(acme, changelog="First.")
    publish(
        acme,
        "1.1.0",
        changelog="Faster.",
        permissions={
            "platform_tools": ["current_time"],
            "memory": True,
        },
    )
    yank = "/api/v1/packages/words/helper/versions/1.1.0/yank"
    assert acme.client.post(yank, {"reason": "slow"}, format="json").status_code == 200
    body = {"manifest": manifest(name="hidden"), "visibility": "unlisted"}
    acme.client.post("/api/v1/packages/words/hidden/versions", body, format="json")
    return Client()


def test_search_finds_a_listed_package_and_not_an_unlisted_one(catalogue):
    found = catalogue.get("/marketplace/", {"q": "words"})
    assert found.status_code == 200
    html = found.content.decode()
    assert "words/helper" in html
    assert "words/hidden" not in html

    nothing = catalogue.get("/marketplace/", {"q": "no such thing"}).content.decode()
    assert 'id="nothing"' in nothing and "words/helper" not in nothing


def test_a_package_page_shows_versions_permissions_price_and_marks_yanked_ones(catalogue):
    page = catalogue.get("/marketplace/words/helper/")
    assert page.status_code == 200
    html = page.content.decode()
    # The latest installable version is 1.0.0: 1.1.0 is yanked, and marked so.
    assert "<h2>Version 1.0.0</h2>" in html
    rows = re.findall(r'<tr class="version">(.*?)</tr>', html, re.S)
    assert "1.1.0" in rows[0] and "yanked" in rows[0] and "slow" in rows[0]
    assert "1.0.0" in rows[1] and "yanked" not in rows[1]
    assert "current_time" in html and "&quot;free&quot;" in html and "First." in html

    assert catalogue.get("/marketplace/words/hidden/").status_code == 404
    assert catalogue.get("/marketplace/words/nothing/").status_code == 404
