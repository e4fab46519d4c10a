"""Every address `make run` prints answers (scripts/dev.py's banner), and the API's index
leads to every resource."""

from __future__ import annotations

import importlib.util
import json
import re

import pytest
from django.test import Client

from tests.support import ROOT

pytestmark = pytest.mark.django_db

PORT = 8000  # only printed: the addresses are requested in-process


def load_dev_script():
    spec = importlib.util.spec_from_file_location("dev_script", ROOT / "scripts" / "dev.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def banner(acme, tmp_path, monkeypatch) -> str:
    dev = load_dev_script()
    demo = {
        "tenant": "acme",
        "agent": "assistant",
        "provider": "offline",
        "model": "offline-1",
        "api_key": acme.key,
        "admin_username": "admin",
        "admin_password": "pw",
    }
    monkeypatch.setattr(dev, "DEMO_FILE", tmp_path / "demo.json")
    dev.DEMO_FILE.write_text(json.dumps(demo))
    return dev.banner(port=PORT, flower_port=5555, redis_url="redis://x/0", private=None)


def test_every_address_of_the_web_server_in_the_banner_answers(banner, acme):
    urls = re.findall(rf"http://127\.0\.0\.1:{PORT}(/\S*)", banner)
    assert "/api/v1/" in urls and "/api/docs/" in urls and "/admin/" in urls, banner

    for path in urls:
        response = Client().get(path, headers=acme.headers)
        assert response.status_code in (200, 302), (path, response.status_code)
        if response.status_code == 302:  # the admin sends you to its login page
            assert Client().get(response["Location"]).status_code == 200, path


def test_the_api_index_links_to_every_resource_and_the_docs(acme):
    index = Client().get("/api/v1/")

    assert index.status_code == 200
    body = index.json()
    assert Client().get(body["docs"]).status_code == 200
    assert Client().get(body["schema"]).status_code == 200
    resources = body["resources"]
    assert {"tenant", "agents", "sessions", "cron_jobs", "usage"} <= set(resources)
    for name, resource in resources.items():
        assert resource["description"], name
        response = acme.client.get(resource["url"])
        if name.startswith("ops_"):
            assert response.status_code == 403, name  # staff only
            assert response.json()["error"]["code"] == "staff_only"
        else:
            assert response.status_code == 200, (name, response.content)
