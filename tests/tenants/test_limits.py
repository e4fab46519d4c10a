"""Tenant limits, enforced before every model call by the Redis limiter, with real workers."""

import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from agents import services
from agents.models import Turn
from tenants.models import UsageRecord
from tenants.services import set_limits
from tests.conftest import TenantFixture
from tests.support import make_agent, send, wait_for_turn, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("worker")]


def test_an_exhausted_budget_fails_the_turn_before_any_model_call(acme, agent, model):
    set_limits(tenant=acme.tenant, tokens_per_day=10_000)
    # 9,900 tokens already used today: 100 left, and any call is estimated over that.
    UsageRecord.objects.create(
        tenant=acme.tenant,
        provider="openai",
        model="fake-1",
        input_tokens=9_000,
        output_tokens=900,
    )

    turn = wait_for_turn(send(acme, "agent:ops:main", "hello")["turn"]["id"])

    assert (turn.status, turn.error_code) == ("failed", "budget_exceeded")
    assert model.call_count == 0
    # Raising the budget lets the next turn through, without a restart.
    set_limits(tenant=acme.tenant, tokens_per_day=1_000_000)
    assert wait_for_turn(send(acme, "agent:ops:main", "again")["turn"]["id"]).status == (
        "succeeded"
    )


def test_the_monthly_budget_is_enforced_too(acme, agent, model):
    set_limits(tenant=acme.tenant, tokens_per_month=50)

    turn = wait_for_turn(send(acme, "agent:ops:main", "hello")["turn"]["id"])

    assert turn.error_code == "budget_exceeded"
    assert "monthly" in turn.error_message
    assert model.call_count == 0


def test_at_most_max_concurrent_turns_run_at_once_and_all_finish(acme, agent, model):
    set_limits(tenant=acme.tenant, max_concurrent_turns=2)
    model.add_rule(match=r".*", latency=0.4)

    turn_ids = [send(acme, f"agent:ops:s{i}", f"hi {i}")["turn"]["id"] for i in range(10)]

    for turn_id in turn_ids:
        assert wait_for_turn(turn_id).status == "succeeded"
    mine = [r for r in model.requests if r["messages"][-1]["content"].startswith("hi ")]
    assert len(mine) == 10
    assert peak_overlap(mine) == 2


def peak_overlap(records: list[dict]) -> int:
    """The most of these model calls that were in flight at the same moment."""
    edges = sorted(
        [(r["started_at"], 1) for r in records] + [(r["finished_at"], -1) for r in records],
        key=lambda edge: (edge[0], edge[1]),  # an end before a start at the same instant
    )
    peak = current = 0
    for _, step in edges:
        current += step
        peak = max(peak, current)
    return peak


def test_a_quiet_tenant_is_served_while_a_noisy_tenants_backlog_waits(acme, agent, model):
    quiet = TenantFixture("quiet")
    make_agent(quiet.tenant, model, slug="ops")
    # A first turn proves the running worker consumes the new tenant's queue.
    assert wait_for_turn(send(quiet, "agent:ops:main", "warm up")["turn"]["id"]).status == (
        "succeeded"
    )
    model.add_rule(match=r"^noise", latency=0.5)
    noisy = [
        services.submit_message(
            tenant=acme.tenant, session_key=f"agent:ops:n{i}", content=f"noise {i}"
        ).turn.pk
        for i in range(200)
    ]

    def noisy_waiting() -> int:
        return Turn.objects.filter(pk__in=noisy).exclude(status="succeeded").count()

    backlog = noisy_waiting()
    quiet_turn = wait_for_turn(send(quiet, "agent:ops:main", "hello")["turn"]["id"])
    still_waiting = noisy_waiting()

    assert quiet_turn.status == "succeeded"
    assert backlog >= 100, "the noisy backlog drained before the quiet turn was even sent"
    assert still_waiting > backlog / 2, (
        f"the quiet turn waited for {backlog - still_waiting} of {backlog} noisy turns"
    )
    for turn_id in noisy:  # let the worker finish before the test's data is flushed
        wait_for_turn(turn_id, timeout=120)


def test_a_burst_over_the_request_rate_is_delayed_not_lost(acme, agent, model):
    set_limits(tenant=acme.tenant, requests_per_minute=30)  # a full bucket, then 1 per 2 s

    turn_ids = [send(acme, f"agent:ops:r{i}", f"hi {i}")["turn"]["id"] for i in range(33)]

    for turn_id in turn_ids:
        assert wait_for_turn(turn_id, timeout=40).status == "succeeded"
    starts = sorted(r["started_at"] for r in model.requests)
    assert len(starts) == 33
    assert starts[-1] - starts[0] >= 3.5  # the last three had to wait for tokens


def turn_seen_by(tenant_fixture, turn_id: int) -> dict:
    response = tenant_fixture.client.get(f"/api/v1/turns/{turn_id}")
    assert response.status_code == 200, response.json()
    return response.json()


def parked_sessions(tenant_fixture) -> int:
    return tenant_fixture.client.get("/api/v1/tenant").json()["usage"]["parked_sessions"]


def test_a_turn_parked_by_the_request_rate_shows_why_and_when_it_resumes(acme, agent, model):
    set_limits(tenant=acme.tenant, requests_per_minute=1)  # one call, then one a minute
    first = wait_for_turn(send(acme, "agent:ops:a", "first")["turn"]["id"])
    assert first.status == "succeeded"

    sent_at = timezone.now()
    parked_id = send(acme, "agent:ops:b", "second")["turn"]["id"]
    parked = wait_until(
        lambda: (body := turn_seen_by(acme, parked_id))["waiting"] and body,
        message="the second turn to be parked",
    )

    assert parked["status"] == "queued"
    assert parked["waiting"]["reason"] == "rate_limited"
    resumes_at = parse_datetime(parked["waiting"]["resumes_at"])
    assert sent_at + timedelta(seconds=30) < resumes_at < sent_at + timedelta(seconds=70)
    assert parked_sessions(acme) == 1
    assert turn_seen_by(acme, first.pk)["waiting"] is None


def test_a_turn_parked_by_the_concurrency_cap_shows_why_and_runs_when_a_slot_frees(
    acme, agent, model
):
    set_limits(tenant=acme.tenant, max_concurrent_turns=1)
    model.add_rule(match=r"^slow", latency=3)
    running_id = send(acme, "agent:ops:a", "slow one")["turn"]["id"]
    wait_until(lambda: model.call_count == 1, message="the first turn to call the model")

    parked_id = send(acme, "agent:ops:b", "next one")["turn"]["id"]
    parked = wait_until(
        lambda: (body := turn_seen_by(acme, parked_id))["waiting"] and body,
        message="the second turn to be parked",
    )

    assert parked["status"] == "queued"
    assert parked["waiting"] == {"reason": "concurrency_limit", "resumes_at": None}
    assert parked_sessions(acme) == 1
    assert wait_for_turn(running_id).status == "succeeded"
    assert wait_for_turn(parked_id).status == "succeeded"
    assert turn_seen_by(acme, parked_id)["waiting"] is None
    assert parked_sessions(acme) == 0


def test_a_new_tenant_is_served_by_running_workers_without_a_restart(model):
    newcomer = TenantFixture(f"new{int(time.time() * 1000) % 10**8}")
    make_agent(newcomer.tenant, model, slug="ops")

    turn = wait_for_turn(send(newcomer, "agent:ops:main", "hello")["turn"]["id"])

    assert turn.status == "succeeded"


@pytest.mark.django_db
def test_max_sessions_is_checked_when_a_session_is_created(acme):
    services.create_agent(tenant=acme.tenant, slug="ops")
    set_limits(tenant=acme.tenant, max_sessions=2)
    for name in ("a", "b"):
        services.submit_message(tenant=acme.tenant, session_key=f"agent:ops:{name}", content="x")

    response = acme.client.post(
        "/api/v1/sessions/agent:ops:c/messages", {"content": "hi"}, format="json"
    )
    existing = acme.client.post(
        "/api/v1/sessions/agent:ops:a/messages", {"content": "hi"}, format="json"
    )

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "session_limit_reached"
    assert existing.status_code == 202


def test_a_tenant_reads_its_limits_and_usage_but_cannot_change_them(acme):
    body = acme.client.get("/api/v1/tenant").json()
    assert body["limits"]["requests_per_minute"] == acme.tenant.requests_per_minute
    assert set(body["usage"]) >= {"tokens_today", "tokens_this_month", "concurrent_turns"}
    for method in ("put", "patch", "post", "delete"):
        response = getattr(acme.client, method)(
            "/api/v1/tenant", {"limits": {"max_sessions": 10**6}}, format="json"
        )
        assert response.status_code == 405


def test_operators_change_limits_with_a_command(acme, capsys):
    call_command("set_limits", "acme", "--max-concurrent-turns", "7", "--requests-per-minute", "9")

    acme.tenant.refresh_from_db()
    assert acme.tenant.max_concurrent_turns == 7
    assert acme.tenant.requests_per_minute == 9
    assert acme.client.get("/api/v1/tenant").json()["limits"]["max_concurrent_turns"] == 7
