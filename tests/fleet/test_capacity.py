"""The capacity signal: how many workers a shard needs, from the turns and the limits."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from agents.models import Session, Turn, TurnStatus
from beamclaw.redis import get_redis
from fleet import capacity
from fleet.capacity import Policy, ShardLoad, decide, stabilise
from tenants.services import create_tenant
from tests.support import make_agent

POLICY = Policy(concurrency=8, utilisation=0.8, backlog_seconds=10, max_wait_seconds=5)


# --- The decision -------------------------------------------------------------------------


def test_an_idle_shard_keeps_its_minimum():
    decision = decide(ShardLoad("0-of-1", service_seconds=10), POLICY)

    assert (decision.raw_desired_workers, decision.reason) == (1, "min_workers")


def test_steady_load_needs_arrival_rate_times_service_time_threads():
    # 4 turns/s of 5 s each: 20 threads busy; 8 x 0.8 = 6.4 per worker -> 4 workers.
    load = ShardLoad("0-of-1", running=20, arrival_rate=4, service_seconds=5)

    decision = decide(load, POLICY)

    assert decision.needed_threads == 20
    assert (decision.raw_desired_workers, decision.reason) == (4, "load")


def test_a_backlog_adds_the_workers_that_clear_it_within_the_backlog_time():
    # 64 runnable turns of 1 s cleared in 10 s: 6.4 threads more than the 6.4 running.
    load = ShardLoad("0-of-1", running=6, arrival_rate=6.4, service_seconds=1, runnable=64)

    assert decide(load, POLICY).raw_desired_workers == 2


def test_a_turn_waiting_too_long_asks_for_enough_workers_to_run_everything_now():
    load = ShardLoad(
        "0-of-1", running=8, runnable=40, service_seconds=1, oldest_runnable_age_seconds=6
    )
    patient = ShardLoad("0-of-1", running=8, runnable=40, service_seconds=1)

    urgent = decide(load, POLICY)

    assert (urgent.raw_desired_workers, urgent.reason) == (6, "oldest_wait")  # 48 / 8
    assert decide(patient, POLICY).raw_desired_workers == 2


def test_the_provider_rate_limit_caps_the_workers_it_could_keep_busy():
    # 600 calls/min = 10/s; turns of 4 s making 2 calls: 20 threads at most -> 4 workers.
    load = ShardLoad("0-of-1", running=80, arrival_rate=30, service_seconds=4, calls_per_turn=2)
    limited = Policy(**{**POLICY.__dict__, "provider_requests_per_minute": 600, "max_workers": 50})

    decision = decide(load, limited)

    assert (decision.raw_desired_workers, decision.reason) == (4, "provider_ceiling")
    assert decision.ceiling_workers == 4


def test_the_count_is_clamped_to_the_maximum():
    load = ShardLoad("0-of-1", running=500, service_seconds=1)

    assert (decide(load, POLICY).raw_desired_workers, decide(load, POLICY).reason) == (
        10,
        "max_workers",
    )


def test_scaling_is_up_at_once_and_down_only_after_the_window():
    history = [(100.0, 6), (150.0, 2)]

    assert stabilise(9, history, now=160.0, window=120) == 9  # up: at once
    assert stabilise(1, history, now=160.0, window=120) == 6  # down: not while 6 is recent
    assert stabilise(1, history, now=225.0, window=120) == 2  # 6 aged out of the window
    assert stabilise(1, history, now=400.0, window=120) == 1


# --- Measuring ----------------------------------------------------------------------------


def _turns(tenant, agent, sessions: int, status: str, *, age: float = 0.0, prefix: str = "s"):
    created = timezone.now() - timedelta(seconds=age)
    for n in range(sessions):
        session = Session.objects.create(tenant=tenant, agent=agent, key=f"agent:ops:{prefix}{n}")
        turn = Turn.objects.create(
            tenant=tenant, session=session, agent=agent, status=status, mode="enqueue"
        )
        Turn.objects.filter(pk=turn.pk).update(created_at=created)


@pytest.mark.django_db
def test_turns_parked_by_their_tenants_limits_are_not_runnable(model, settings):
    settings.CAPACITY_ARRIVAL_WINDOW_SECONDS = 60
    capped = create_tenant(slug="capped", max_concurrent_turns=3)
    broke = create_tenant(slug="broke", tokens_per_day=100)
    resting = create_tenant(slug="resting", is_active=False)
    for tenant in (capped, broke, resting):
        agent = make_agent(tenant, model)
        _turns(tenant, agent, 2, TurnStatus.RUNNING, prefix="r")
        _turns(tenant, agent, 5, TurnStatus.QUEUED, age=7)
    # A session whose turn runs: its next turn goes after it, never on another worker.
    busy = Session.objects.get(tenant=capped, key="agent:ops:r0")
    Turn.objects.create(tenant=capped, session=busy, agent=busy.agent, mode="enqueue")
    from tenants.limits import _budget_keys  # the limiter's own counter of today's tokens

    get_redis().set(_budget_keys(broke.pk, timezone.now())[0], 100)

    shard = capacity.measure(shard_map=None)["0-of-1"]  # no reshard yet
    tenants = {load.tenant: load for load in shard.tenants}

    assert (tenants["capped"].runnable, tenants["capped"].parked) == (1, 4)
    assert tenants["capped"].parked_by == "concurrency"
    assert (tenants["broke"].runnable, tenants["broke"].parked_by) == (0, "budget")
    assert (tenants["resting"].runnable, tenants["resting"].parked_by) == (0, "suspended")
    assert (shard.running, shard.runnable, shard.parked) == (6, 1, 14)
    assert shard.oldest_runnable_age_seconds == pytest.approx(7, abs=2)
    # All 22 turns were created within the minute (the oldest is 7 s old).
    assert shard.arrival_rate == pytest.approx(22 / 60, abs=0.01)


@pytest.mark.django_db
def test_operators_read_the_signal_as_json_and_at_metrics(acme, agent, settings):
    settings.CAPACITY_DEFAULT_SERVICE_SECONDS = 1  # no turn has finished yet
    settings.METRICS_PUBLIC = True
    _turns(acme.tenant, agent, 30, TurnStatus.QUEUED, age=20)
    get_user_model().objects.create_user("ops", password="ops-pass-1", is_staff=True)
    auth = base64.b64encode(b"ops:ops-pass-1").decode()

    capacity.compute()  # what the beat task does
    response = Client().get("/api/v1/ops/capacity", HTTP_AUTHORIZATION=f"Basic {auth}")
    metrics = Client().get("/metrics").content.decode()

    assert response.status_code == 200, response.content
    body = response.json()
    shard = body["shards"][0]
    assert shard["shard"] == "0-of-1"
    # 20 runnable now (acme's cap), waiting 20 s: enough workers to run them all at once.
    assert (shard["runnable"], shard["parked"]) == (20, 10)
    assert (shard["desired_workers"], shard["reason"]) == (3, "oldest_wait")
    assert body["by_shard"] == {"0-of-1": 3}
    assert shard["tenants"][0]["tenant"] == "acme"
    assert 'beamclaw_desired_workers{shard="0-of-1"} 3.0' in metrics
    assert 'beamclaw_capacity_parked_turns{shard="0-of-1"} 10.0' in metrics
    assert "tenant=" not in metrics.split("beamclaw_desired_workers")[1].split("\n# HELP")[0]


@pytest.mark.django_db
def test_a_report_older_than_the_supervisors_interval_is_computed_anew(acme, agent, settings):
    settings.CAPACITY_DEFAULT_SERVICE_SECONDS = 1
    stored = capacity.compute()  # beat's report, before the load
    _turns(acme.tenant, agent, 30, TurnStatus.QUEUED, age=20)

    fresh_enough = capacity.latest_report(max_age=60)
    recomputed = capacity.latest_report(max_age=0)

    assert fresh_enough == stored
    assert recomputed["computed_at_epoch"] > stored["computed_at_epoch"]
    assert recomputed["by_shard"] == {"0-of-1": 3}  # the load beat has not seen yet
    assert capacity.latest_report() == recomputed  # and stored for the next reader
