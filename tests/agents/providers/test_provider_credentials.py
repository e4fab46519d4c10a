"""A tenant's own provider key and base URL: what may be saved, and whose key goes where.

The platform's key (the workers' OPENAI_API_KEY) only ever goes to the platform's base URL
(the `platform_model` server); a tenant's base URL is called with the tenant's key only.
"""

import time

import httpx
import pytest

from agents.models import ProviderCredential
from tests.conftest import PLATFORM_OPENAI_KEY
from tests.factories import AgentFactory, ProviderCredentialFactory
from tests.support import send, wait_for_turn


def put_openai(tenant_fixture, body: dict):
    return tenant_fixture.client.put("/api/v1/providers/openai", body, format="json")


# -- saving ------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "base_url",
    [
        "http://127.0.0.1:18932/x",
        "http://localhost:11434/v1",
        "http://[::1]:8080/v1",
        "http://10.0.0.5/v1",
        "http://169.254.169.254/latest",
        "http://0.0.0.0:8000/v1",
        "http://no-such-host.invalid/v1",
    ],
)
def test_a_base_url_that_is_not_public_is_refused_without_revealing_why(acme, settings, base_url):
    settings.PROVIDER_BASE_URL_ALLOW_PRIVATE = False

    response = put_openai(acme, {"api_key": "sk-mine", "base_url": base_url})

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "base_url_refused"
    # One answer for "does not resolve" and "resolves inside": no address, no category.
    host = httpx.URL(base_url).host
    assert f"host '{host}' does not resolve to a public address" in error["message"]
    assert not any(
        word in error["message"]
        for word in ("loopback", "private", "link-local", "unspecified", "cannot resolve")
    )
    if host == "localhost":
        assert "127.0.0.1" not in error["message"]
    assert not ProviderCredential.objects.filter(tenant=acme.tenant).exists()


@pytest.mark.django_db
@pytest.mark.usefixtures("hanging_dns")
def test_a_base_url_whose_dns_hangs_is_refused_after_the_dns_timeout(acme, settings):
    settings.OUTBOUND_DNS_TIMEOUT = 0.5
    started = time.monotonic()

    response = put_openai(acme, {"api_key": "sk-mine", "base_url": "http://slow-dns.example/v1"})

    assert time.monotonic() - started < 5
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "base_url_refused"
    assert "did not resolve within 0.5 s" in error["message"]


@pytest.mark.django_db
def test_a_private_base_url_is_saved_when_the_operator_allows_it(acme, settings):
    settings.PROVIDER_BASE_URL_ALLOW_PRIVATE = True

    response = put_openai(acme, {"api_key": "sk-mine", "base_url": "http://127.0.0.1:11434/v1"})

    assert response.status_code == 200
    assert response.json()["base_url"] == "http://127.0.0.1:11434/v1"


@pytest.mark.django_db
def test_a_base_url_without_a_key_of_the_tenants_own_is_refused(acme):
    response = put_openai(acme, {"base_url": "http://127.0.0.1:18932/x"})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "api_key_required"
    assert not ProviderCredential.objects.filter(tenant=acme.tenant).exists()


# -- calling -----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("worker")
def test_the_platform_key_never_goes_to_a_tenant_base_url(acme, model, platform_model):
    # A credential with a base URL and no key (saved before keys were required).
    ProviderCredential.objects.create(
        tenant=acme.tenant, provider="openai", base_url=model.url_openai
    )
    AgentFactory(tenant=acme.tenant, slug="ops", provider="openai", model="m")
    platform_model.reset()

    turn = wait_for_turn(send(acme, "agent:ops:main", "hello")["turn"]["id"])

    assert (turn.status, turn.error_code) == ("failed", "provider_key_required")
    assert model.call_count == 0  # the tenant's server heard nothing, no key, no prompt
    assert platform_model.call_count == 0
    assert PLATFORM_OPENAI_KEY not in turn.error_message


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("worker")
def test_a_tenant_key_goes_to_the_tenant_base_url_and_nowhere_else(acme, model, platform_model):
    ProviderCredentialFactory(
        tenant=acme.tenant, provider="openai", api_key="sk-mine", base_url=model.url_openai
    )
    AgentFactory(tenant=acme.tenant, slug="ops", provider="openai", model="m")
    platform_model.reset()

    turn = wait_for_turn(send(acme, "agent:ops:main", "hello")["turn"]["id"])

    assert turn.status == "succeeded"
    assert [r["headers"]["authorization"] for r in model.requests] == ["Bearer sk-mine"]
    assert platform_model.call_count == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("worker")
def test_a_tenant_without_its_own_endpoint_uses_the_platforms_with_the_platform_key(
    acme, model, platform_model
):
    AgentFactory(tenant=acme.tenant, slug="ops", provider="openai", model="m")
    platform_model.reset()

    turn = wait_for_turn(send(acme, "agent:ops:main", "hello")["turn"]["id"])

    assert turn.status == "succeeded"
    [request] = platform_model.requests
    assert request["headers"]["authorization"] == f"Bearer {PLATFORM_OPENAI_KEY}"
    assert model.call_count == 0
