import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from tenants.models import ApiKey
from tenants.services import create_tenant, issue_api_key, revoke_api_key

pytestmark = pytest.mark.django_db


def client_with(secret: str | None = None, header: str | None = None) -> APIClient:
    client = APIClient()
    if header is not None:
        client.credentials(HTTP_AUTHORIZATION=header)
    elif secret is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def test_issued_key_is_shown_once_and_only_its_hash_is_stored():
    tenant = create_tenant(slug="acme")
    issued = issue_api_key(tenant=tenant, name="ci")

    row = ApiKey.objects.get(pk=issued.api_key.pk)
    stored = " ".join(str(value) for value in vars(row).values())
    assert issued.secret.startswith(f"bc_{row.prefix}_")
    assert issued.secret not in stored
    assert issued.secret.split("_", 2)[2] not in stored
    assert row.secret_hash != issued.secret


def test_a_valid_key_reads_its_own_tenant_and_limits():
    tenant = create_tenant(slug="acme", name="Acme Corp", max_concurrent_turns=3)
    secret = issue_api_key(tenant=tenant).secret

    response = client_with(secret).get("/api/v1/tenant")

    assert response.status_code == 200
    body = response.json()
    assert body["slug"] == "acme"
    assert body["name"] == "Acme Corp"
    assert body["queue"] == "tenant.acme"
    assert body["limits"]["max_concurrent_turns"] == 3
    assert ApiKey.objects.get(tenant=tenant).last_used_at is not None


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "authentication_required"),
        ("Token abc", "invalid_authorization_header"),
        ("Bearer", "invalid_authorization_header"),
        ("Bearer not-a-key", "invalid_authorization_header"),
        ("Bearer bc_deadbeef_wrongsecret", "invalid_api_key"),
    ],
)
def test_missing_malformed_and_wrong_keys_are_401_with_their_own_code(header, code):
    response = client_with(header=header).get("/api/v1/tenant")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == code
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_wrong_secret_with_a_real_prefix_is_rejected():
    tenant = create_tenant(slug="acme")
    issued = issue_api_key(tenant=tenant)
    forged = f"bc_{issued.api_key.prefix}_{'x' * 43}"

    response = client_with(forged).get("/api/v1/tenant")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


def test_a_revoked_key_is_401():
    tenant = create_tenant(slug="acme")
    issued = issue_api_key(tenant=tenant)
    revoke_api_key(api_key=issued.api_key)

    response = client_with(issued.secret).get("/api/v1/tenant")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "api_key_revoked"


def test_a_suspended_tenant_is_403():
    tenant = create_tenant(slug="acme")
    secret = issue_api_key(tenant=tenant).secret
    tenant.is_active = False
    tenant.save()

    response = client_with(secret).get("/api/v1/tenant")

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "tenant_suspended"


def test_tenant_slugs_must_be_dns_labels():
    from django.core.exceptions import ValidationError

    for bad in ("Acme", "-acme", "acme-", "a" * 64, "ac_me", ""):
        with pytest.raises(ValidationError):
            create_tenant(slug=bad)


def test_management_commands_create_a_tenant_and_a_working_key(capsys):
    call_command("create_tenant", "globex", "--name", "Globex", "--max-sessions", "5")
    call_command("create_api_key", "globex", "--name", "ops")
    secret = capsys.readouterr().out.strip().splitlines()[-1]

    response = client_with(secret).get("/api/v1/tenant")

    assert response.status_code == 200
    assert response.json()["limits"]["max_sessions"] == 5
