"""A suspended tenant's Slack and Discord bindings take nothing: refused once the signature
verifies, before any turn exists (its API keys answer the same 403)."""

from __future__ import annotations

import pytest

from agents.models import Turn
from tenants.services import set_limits
from tests.agents.channels.webhooks import post_discord, post_slack, slack_event, slash_command

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def suspended(acme):
    """Suspends tenant acme; listed after a binding fixture, once its binding exists."""
    set_limits(tenant=acme.tenant, is_active=False)


def test_a_suspended_tenants_slack_event_is_refused_and_creates_no_turn(slack_binding, suspended):
    response = post_slack(slack_binding.pk, slack_event())

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "tenant_suspended"
    assert not Turn.objects.exists()


def test_a_suspended_tenants_discord_command_is_refused_and_creates_no_turn(
    discord_binding, discord_key, suspended
):
    response = post_discord(discord_binding.pk, slash_command(), discord_key)

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "tenant_suspended"
    assert not Turn.objects.exists()


def test_a_suspended_tenants_binding_still_refuses_a_bad_signature_first(slack_binding, suspended):
    """Only a caller holding the binding's secret learns that the tenant is suspended."""
    response = post_slack(slack_binding.pk, slack_event(), secret="not-the-secret")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_signature"
