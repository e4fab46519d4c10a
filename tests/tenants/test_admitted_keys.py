"""A web process answers a key it admitted moments ago without the database
(tenants.admitted_keys); revocation and suspension still end access: at once when made in
the same process, within API_KEY_CACHE_SECONDS when made in another."""

from __future__ import annotations

import asyncio

import pytest
from django.db import connection
from django.test import AsyncClient
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from tenants.models import ApiKey
from tenants.services import create_tenant, issue_api_key, revoke_api_key, set_limits
from tests.support import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

# The async view (adrf): its authentication runs on the event loop.
ASYNC_PATH = "/api/v1/sessions/agent:ops:main/messages"


def sync_get(secret: str, path: str = "/api/v1/tenant"):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client.get(path)


def async_get(secret: str, path: str = ASYNC_PATH):
    async def get():
        return await AsyncClient().get(path, headers={"Authorization": f"Bearer {secret}"})

    return asyncio.run(get())


@pytest.fixture
def issued():
    tenant = create_tenant(slug="acme")
    return issue_api_key(tenant=tenant)


@pytest.mark.parametrize("get", [sync_get, async_get], ids=["sync view", "async view"])
def test_a_key_revoked_in_this_process_is_refused_at_once(issued, get):
    assert get(issued.secret).status_code in (200, 404)  # admitted (no such session: 404)

    revoke_api_key(api_key=issued.api_key)

    response = get(issued.secret)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "api_key_revoked"


@pytest.mark.parametrize("get", [sync_get, async_get], ids=["sync view", "async view"])
def test_a_tenant_suspended_in_this_process_is_refused_at_once(issued, get):
    assert get(issued.secret).status_code in (200, 404)

    set_limits(tenant=issued.api_key.tenant, is_active=False)

    response = get(issued.secret)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "tenant_suspended"


@pytest.mark.parametrize("get", [sync_get, async_get], ids=["sync view", "async view"])
def test_a_key_revoked_by_another_process_is_refused_within_the_cache_time(issued, get, settings):
    settings.API_KEY_CACHE_SECONDS = 0.5
    assert get(issued.secret).status_code in (200, 404)

    # As another process writes it: a plain UPDATE, no signal reaches this one.
    ApiKey.objects.filter(pk=issued.api_key.pk).update(revoked_at=timezone.now())

    wait_until(
        lambda: get(issued.secret).status_code == 401,
        timeout=settings.API_KEY_CACHE_SECONDS + 2,
        message="the revoked key to be refused",
    )


def test_a_key_used_again_moments_later_costs_no_query():
    tenant = create_tenant(slug="acme")
    secret = issue_api_key(tenant=tenant).secret
    assert sync_get(secret).status_code == 200

    with CaptureQueriesContext(connection) as queries:
        assert sync_get(secret).status_code == 200

    assert not [q for q in queries if "tenants_apikey" in q["sql"]], queries.captured_queries


def test_cached_keys_open_only_their_own_tenant():
    secrets = {
        slug: issue_api_key(tenant=create_tenant(slug=slug)).secret for slug in ("acme", "globex")
    }
    for _ in range(2):  # the second round is answered from the cache
        for slug, secret in secrets.items():
            assert sync_get(secret).json()["slug"] == slug


def test_the_async_views_throttle_answers_429_in_the_one_error_shape(issued, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"api_key": "2/min"},
    }
    statuses = [async_get(issued.secret).status_code for _ in range(2)]
    response = async_get(issued.secret)

    assert statuses == [404, 404]  # admitted; no such session
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "rate_limited"
    assert int(response["Retry-After"]) >= 1
