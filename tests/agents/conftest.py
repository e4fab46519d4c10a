"""Fixtures for runtime tests: an agent of tenant acme talking to the fake model server."""

from __future__ import annotations

import pytest

from agents import services
from agents.models import FINAL_STATUSES, Message, Turn
from tests.support import wait_until


def make_agent(tenant, model_server, slug: str = "ops", **fields):
    services.set_provider_credential(
        tenant=tenant, provider="openai", api_key="sk-test", base_url=model_server.url_openai
    )
    defaults = {"provider": "openai", "model": "fake-1", "system_prompt": "You are a test."}
    return services.create_agent(tenant=tenant, slug=slug, **{**defaults, **fields})


@pytest.fixture
def agent(acme, model):
    return make_agent(acme.tenant, model)


def send(tenant_fixture, key: str, content: str, **extra):
    response = tenant_fixture.client.post(
        f"/api/v1/sessions/{key}/messages", {"content": content, **extra}, format="json"
    )
    assert response.status_code in (200, 202), response.json()
    return response.json()


def wait_for_turn(turn_id: int, timeout: float = 30) -> Turn:
    def finished():
        turn = Turn.objects.get(pk=turn_id)
        return turn if turn.status in FINAL_STATUSES else None

    return wait_until(finished, timeout=timeout, message=f"turn {turn_id} to finish")


def wait_for_status(turn_id: int, status: str, timeout: float = 20) -> Turn:
    return wait_until(
        lambda: Turn.objects.filter(pk=turn_id, status=status).first(),
        timeout=timeout,
        message=f"turn {turn_id} to be {status}",
    )


def conversation(key: str) -> list[tuple[int, str, str]]:
    return list(
        Message.objects.filter(session__key=key, seq__isnull=False)
        .order_by("seq")
        .values_list("seq", "role", "content")
    )
