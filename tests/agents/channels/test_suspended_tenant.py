"""A suspended tenant's Slack and Discord bindings take nothing: refused once the signature
verifies, before any turn exists (its API keys answer the same 403)."""

from __future__ import annotations

import pytest
from nacl.signing import SigningKey

from agents.channels import bindings
from agents.models import Turn
from tenants.services import set_limits
from tests.agents.channels.test_slack_and_discord import (
    SIGNING_SECRET,
    post_discord,
    post_slack,
    slack_event,
    slash_command,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def suspended_acme(acme, agent):
    set_limits(tenant=acme.tenant, is_active=False)
    return acme


def test_a_suspended_tenants_slack_event_is_refused_and_creates_no_turn(suspended_acme):
    binding = bindings.create_binding(
        tenant=suspended_acme.tenant,
        kind="slack",
        agent="ops",
        external_id="T1",
        signing_secret=SIGNING_SECRET,
        bot_token="xoxb-test-bot-token",
    )

    response = post_slack(binding.pk, slack_event())

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "tenant_suspended"
    assert not Turn.objects.exists()


def test_a_suspended_tenants_discord_command_is_refused_and_creates_no_turn(suspended_acme):
    key = SigningKey.generate()
    binding = bindings.create_binding(
        tenant=suspended_acme.tenant,
        kind="discord",
        agent="ops",
        external_id="A1",
        public_key=key.verify_key.encode().hex(),
        bot_token="discord-bot-token",
    )

    response = post_discord(binding.pk, slash_command(), key)

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "tenant_suspended"
    assert not Turn.objects.exists()


def test_a_suspended_tenants_binding_still_refuses_a_bad_signature_first(suspended_acme):
    """Only a caller holding the binding's secret learns that the tenant is suspended."""
    binding = bindings.create_binding(
        tenant=suspended_acme.tenant,
        kind="slack",
        agent="ops",
        external_id="T1",
        signing_secret=SIGNING_SECRET,
        bot_token="xoxb-test-bot-token",
    )

    response = post_slack(binding.pk, slack_event(), secret="not-the-secret")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_signature"
