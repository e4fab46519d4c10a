"""Hot upgrade with a real worker: a version published while a turn runs reaches the
next turn, and the running one finishes on the version it began with."""

from __future__ import annotations

import threading

import pytest

from agents.models import Session, Turn
from agents.runtime import agent_settings
from marketplace.models import TurnPin
from tests.factories import ProviderCredentialFactory
from tests.support import send, wait_for_turn, wait_until

from .test_api import install, manifest

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("worker")]

CALCULATE = [{"name": "calculator", "arguments": {"expression": "6*7"}}]


def publish_prompt(tenant, version: str, prompt: str):
    data = manifest(
        version,
        system_prompt=prompt,
        model={"provider": "openai", "name": "fake-1"},
        builtin_tools=["calculator"],
        permissions={"platform_tools": ["calculator"], "models": ["openai/fake-1"]},
    )
    response = tenant.client.post(
        "/api/v1/packages/words/helper/versions", {"manifest": data}, format="json"
    )
    assert response.status_code == 201, response.json()


def system_prompt(record: dict) -> str:
    return next(m["content"] for m in record["messages"] if m["role"] == "system")


def test_a_turn_finishes_on_its_version_and_the_next_turn_runs_the_new_one(acme, globex, model):
    acme.client.put("/api/v1/publisher", {"handle": "words"}, format="json")
    publish_prompt(acme, "1.0.0", "You are version one.")
    ProviderCredentialFactory(
        tenant=globex.tenant, provider="openai", api_key="sk-test", base_url=model.url_openai
    )
    installed = install(globex, "^1", agent="helper").json()
    # The first turn calls the calculator (its first model call is held), then answers.
    release = threading.Event()
    model.add_rule(match=r"^first", tool_calls=CALCULATE, hold=release, times=1)
    model.add_rule(reply="done")

    first = send(globex, "agent:helper:main", "first")["turn"]["id"]
    wait_until(
        lambda: any(r["held"] for r in model.requests), message="the first model call to be held"
    )
    publish_prompt(acme, "1.1.0", "You are version one point one.")
    moved = globex.client.get(f"/api/v1/installations/{installed['id']}").json()
    assert moved["version"] == "1.1.0"  # the installation moved at once
    release.set()
    assert wait_for_turn(first).status == "succeeded"
    second = send(globex, "agent:helper:main", "second")["turn"]["id"]
    assert wait_for_turn(second).status == "succeeded"

    prompts = [system_prompt(r) for r in model.requests]
    # Both model calls of the first turn ran version one; the second turn ran 1.1.0.
    assert prompts == [
        "You are version one.",
        "You are version one.",
        "You are version one point one.",
    ]
    pins = dict(TurnPin.objects.values_list("turn_id", "version__version"))
    assert pins == {first: "1.0.0", second: "1.1.0"}


def test_a_resumed_or_retried_turn_reads_its_pinned_version_back(acme, globex, model):
    """What a worker does when it starts a turn again (after a park, a hand-over or a
    crash): it reloads the turn and its agent, which by then follow the new version."""
    acme.client.put("/api/v1/publisher", {"handle": "words"}, format="json")
    publish_prompt(acme, "1.0.0", "You are version one.")
    install(globex, "^1", agent="helper")
    session = Session.objects.create(
        tenant=globex.tenant, agent=globex.tenant.agents.get(slug="helper"), key="agent:helper:x"
    )
    turn = Turn.objects.create(
        tenant=globex.tenant, agent=session.agent, session=session, mode="enqueue"
    )

    def started(turn_id: int) -> str:
        loaded = Turn.objects.select_related("agent").get(pk=turn_id)
        agent_settings.settle(loaded)
        return loaded.agent.system_prompt

    assert started(turn.pk) == "You are version one."
    publish_prompt(acme, "1.1.0", "You are version one point one.")
    assert started(turn.pk) == "You are version one."  # pinned at its first start
    later = Turn.objects.create(
        tenant=globex.tenant, agent=session.agent, session=session, mode="enqueue"
    )
    assert started(later.pk) == "You are version one point one."
