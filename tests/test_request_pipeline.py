"""The web's request pipeline under ASGI (beamclaw/middleware.py): API calls reach their
view on the event loop, without a cookie session; the admin still has its session, CSRF
and static files; every response carries the security headers."""

from __future__ import annotations

import asyncio

import pytest
from django.contrib.auth import get_user_model
from django.core.checks import run_checks
from django.core.management import call_command
from django.test import AsyncClient

from tests.support import count_thread_hops

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "s3cret-pass"


@pytest.fixture
def thread_hops(monkeypatch) -> list[str]:
    """The functions each request ran in a thread (asgiref's sync_to_async), in order."""
    return count_thread_hops(monkeypatch)


@pytest.fixture
def collected_static(settings, tmp_path):
    # As the image serves them: collected, then served by WhiteNoise from STATIC_ROOT.
    settings.STATIC_ROOT = tmp_path
    call_command("collectstatic", "--noinput", "--verbosity", "0")


def test_an_api_call_crosses_to_a_thread_only_for_its_database_work(acme, thread_hops):
    async def call():
        return await AsyncClient().get("/api/v1/tenant", headers=acme.headers)

    response = asyncio.run(call())

    assert response.status_code == 200
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
    assert "sessionid" not in response.cookies and "csrftoken" not in response.cookies
    # Django's own: request_started's receivers, the view (a sync DRF view), rendering
    # and response.close(); no middleware hook.
    assert not [hop for hop in thread_hops if "Middleware" in hop], thread_hops
    assert len(thread_hops) == 4, thread_hops


def test_the_admin_signs_in_and_gets_its_static_files_under_asgi(collected_static):
    get_user_model().objects.create_superuser("admin", password=PASSWORD)

    async def session():
        client = AsyncClient(enforce_csrf_checks=True)
        assert (await client.get("/admin/")).status_code == 302
        page = await client.get("/admin/login/")
        assert page.status_code == 200
        assert page["X-Frame-Options"] == "DENY"
        token = client.cookies["csrftoken"].value
        refused = await client.post("/admin/login/", {"username": "admin", "password": PASSWORD})
        signed_in = await client.post(
            "/admin/login/",
            {"username": "admin", "password": PASSWORD, "csrfmiddlewaretoken": token},
        )
        index = await client.get("/admin/")
        stylesheet = await client.get("/static/admin/css/base.css")
        missing = await client.get("/static/admin/css/no-such-file.css")
        return refused, signed_in, index, stylesheet, missing

    refused, signed_in, index, stylesheet, missing = asyncio.run(session())

    assert refused.status_code == 403  # no CSRF token: the admin is still protected
    assert signed_in.status_code == 302
    assert index.status_code == 200 and b"Site administration" in index.content
    assert stylesheet.status_code == 200
    assert b"".join(stylesheet.streaming_content)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"


def test_deploy_checks_still_warn_about_https_settings_our_middleware_would_apply(settings):
    # Django checks HSTS, SSL redirects and the CSRF cookie only when its own middleware
    # is listed by name; ours stands in for it, so the warnings must still come.
    settings.SECURE_HSTS_SECONDS = 0
    settings.SECURE_SSL_REDIRECT = False
    settings.CSRF_COOKIE_SECURE = False
    ids = {message.id for message in run_checks(include_deployment_checks=True)}
    assert {"security.W004", "security.W008", "security.W016"} <= ids

    settings.SECURE_HSTS_SECONDS = 3600
    settings.SECURE_SSL_REDIRECT = True
    settings.CSRF_COOKIE_SECURE = True
    ids = {message.id for message in run_checks(include_deployment_checks=True)}
    assert not {"security.W004", "security.W008", "security.W016"} & ids
    assert "beamclaw.middleware.SecurityHeaders" in settings.MIDDLEWARE  # still listed
