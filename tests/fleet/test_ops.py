"""The worker registry as operators see it, and the worker's refusal of --autoscale."""

from __future__ import annotations

import base64
import os
import subprocess

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from tests.support import ROOT, python, wait_until

pytestmark = pytest.mark.django_db

OPS_WORKERS = "/api/v1/ops/workers"


def basic(username: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"HTTP_AUTHORIZATION": f"Basic {token}"}


@pytest.fixture
def staff():
    get_user_model().objects.create_user("operator", password="s3cret-pass", is_staff=True)
    return basic("operator", "s3cret-pass")


def test_staff_see_every_running_worker_with_its_shard_state_and_load(worker, staff):
    hostname = f"worker@{os.uname().nodename}"

    def listed() -> dict | None:
        response = Client().get(OPS_WORKERS, **staff)
        assert response.status_code == 200, response.content
        return next((w for w in response.json()["workers"] if w["hostname"] == hostname), None)

    entry = wait_until(listed, timeout=15, message="the suite's worker in the registry")

    assert entry["pid"] == worker.proc.pid
    assert entry["state"] == "active"
    assert entry["shard"] == "shard 0/1"
    assert entry["concurrency"] == 8
    assert entry["in_flight"] == len(entry["running"])
    assert entry["last_seen"] >= entry["started_at"]


def test_the_admin_lists_the_workers_for_staff(worker, staff):
    admin = get_user_model().objects.create_superuser("root", password="root-pass-1")
    client = Client()
    client.force_login(admin)

    index = client.get("/admin/")
    page = wait_until(
        lambda: (
            (r := client.get("/admin/workers/"))
            and f"worker@{os.uname().nodename}" in r.content.decode()
            and r
        ),
        timeout=15,
        message="the worker on the admin's page",
    )

    assert 'href="/admin/workers/"' in index.content.decode()
    assert page.status_code == 200


def test_tenants_and_anonymous_callers_cannot_list_workers_and_are_told_why(acme):
    get_user_model().objects.create_user("someone", password="not-staff-1")

    anonymous = Client().get(OPS_WORKERS)
    tenant_key = Client().get(OPS_WORKERS, HTTP_AUTHORIZATION=f"Bearer {acme.key}")
    not_staff = Client().get(OPS_WORKERS, **basic("someone", "not-staff-1"))
    wrong_password = Client().get(OPS_WORKERS, **basic("someone", "wrong"))

    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "not_authenticated"
    # An API key is a tenant's, never an operator's: it is refused as such, not as missing.
    for refused in (tenant_key, not_staff):
        assert refused.status_code == 403, refused.content
        error = refused.json()["error"]
        assert error["code"] == "staff_only"
        assert "staff" in error["message"]
        assert "credentials were not provided" not in error["message"]
    assert wrong_password.status_code == 401
    assert wrong_password.json()["error"]["code"] == "authentication_failed"


def test_a_worker_started_with_autoscale_on_the_threads_pool_refuses_to_start(platform_env):
    started = subprocess.run(
        python("-m", "celery", "-A", "beamclaw", "worker", "-P", "threads", "--autoscale", "4,1"),
        cwd=ROOT,
        env=platform_env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert started.returncode != 0
    assert "beamclaw.E001: --autoscale does not work with the threads pool" in started.stderr
