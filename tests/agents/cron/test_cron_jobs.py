"""Cron jobs: fired by a real celery-beat and worker, run now, skipped runs, the API."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from django.db import connections
from django.test import Client
from django.utils import timezone
from django_celery_beat.models import ClockedSchedule, PeriodicTask
from rest_framework.test import APIClient

from agents import services
from agents.models import CronJob, CronRun, Turn
from agents.tasks import fire_cron_job
from tenants.services import set_limits
from tests.conftest import start_beat
from tests.factories import AgentFactory, TurnFactory
from tests.support import conversation, wait_for_turn, wait_until


@pytest.fixture
def beat(platform_env, log_dir, transactional_db):
    process = start_beat(platform_env, log_dir)
    yield process
    process.stop()


def create_job(tenant_fixture, **fields) -> dict:
    body = {"agent": "ops", "message": "ping", "schedule": {"every_seconds": 3600}, **fields}
    response = tenant_fixture.client.post("/api/v1/cron-jobs", body, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def beat_entry(job_id: int) -> PeriodicTask:
    return PeriodicTask.objects.select_related("crontab", "interval", "clocked").get(
        name=f"cron-job-{job_id}"
    )


def parse(times: list[str]) -> list[datetime]:
    return [datetime.fromisoformat(t.replace("Z", "+00:00")) for t in times]


def runs_stay_at_one_count(job_id: int, seconds: float):
    """A condition that holds once the job's run count has not changed for `seconds`."""
    seen = {"count": -1, "since": 0.0}

    def quiet() -> bool:
        count = CronRun.objects.filter(job_id=job_id).count()
        now = time.monotonic()
        if count != seen["count"]:
            seen.update(count=count, since=now)
        return now - seen["since"] >= seconds

    return quiet


# --- Through a real beat and worker -----------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("worker", "beat")
def test_a_job_every_two_seconds_fires_at_least_twice_with_history_and_pausing_stops_it(
    acme, agent
):
    set_limits(tenant=acme.tenant, min_cron_interval_seconds=1)
    job = create_job(acme, message="status?", schedule={"every_seconds": 2})
    job_id = job["id"]
    times = parse(job["next_runs"])
    assert len(times) == 5
    assert {b - a for a, b in pairwise(times)} == {timedelta(seconds=2)}

    def two_answered_runs():
        answered = CronRun.objects.filter(job_id=job_id, turn__status="succeeded")
        return answered.count() >= 2

    wait_until(two_answered_runs, timeout=40, message="two cron runs answered")

    history = acme.client.get(f"/api/v1/cron-jobs/{job_id}/runs").json()["results"]
    answered = [run for run in history if run["turn_status"] == "succeeded"]
    assert len(answered) >= 2
    for run in answered:
        assert run["trigger"] == "schedule" and run["outcome"] == "submitted"
        # Each run has a fresh session of its own.
        key = f"agent:ops:cron:{job_id}:{run['number']}"
        assert run["session_key"] == key
        assert conversation(key) == [(1, "user", "status?"), (2, "assistant", "echo: status?")]
    assert [r["number"] for r in history] == sorted({r["number"] for r in history}, reverse=True)

    paused = acme.client.patch(f"/api/v1/cron-jobs/{job_id}", {"enabled": False}, format="json")
    paused_at = timezone.now()
    assert paused.status_code == 200
    assert paused.json()["enabled"] is False and paused.json()["next_runs"] == []
    assert beat_entry(job_id).enabled is False

    # A fire beat sent before it noticed would be recorded as skipped; then nothing at all,
    # for three periods in a row.
    wait_until(runs_stay_at_one_count(job_id, 6), timeout=30, message="runs to stop")
    assert not CronRun.objects.filter(
        job_id=job_id, created_at__gt=paused_at, outcome="submitted"
    ).exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("worker", "beat")
def test_a_one_off_job_fires_once_and_then_is_done(acme, agent):
    at = timezone.now() + timedelta(seconds=3)
    job = create_job(acme, message="once", schedule={"at": at.isoformat()})
    assert parse(job["next_runs"]) == [at]
    assert beat_entry(job["id"]).one_off is True

    run = wait_until(
        lambda: CronRun.objects.filter(job_id=job["id"]).first(), timeout=30, message="the run"
    )
    assert run.created_at >= at
    assert wait_for_turn(run.turn_id).status == "succeeded"

    shown = acme.client.get(f"/api/v1/cron-jobs/{job['id']}").json()
    assert shown["enabled"] is False and shown["next_runs"] == []
    wait_until(runs_stay_at_one_count(job["id"], 4), timeout=20, message="no second run")
    assert CronRun.objects.filter(job_id=job["id"]).count() == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("worker")
def test_run_now_sends_the_message_to_the_fixed_session_and_the_turn_succeeds(acme, agent):
    job = create_job(
        acme,
        message="daily report",
        session_key="agent:ops:reports",
        schedule={"cron": "30 9 * * 1-5", "timezone": "Europe/Paris"},
    )
    paris = [t.astimezone(ZoneInfo("Europe/Paris")) for t in parse(job["next_runs"])]
    assert len(paris) == 5 and paris == sorted(paris)
    assert all((t.hour, t.minute, t.weekday() < 5) == (9, 30, True) for t in paris)

    response = acme.client.post(f"/api/v1/cron-jobs/{job['id']}/run")

    assert response.status_code == 202
    run = response.json()
    assert (run["trigger"], run["outcome"], run["number"]) == ("manual", "submitted", 1)
    assert run["session_key"] == "agent:ops:reports"
    assert wait_for_turn(run["turn_id"]).status == "succeeded"
    assert conversation("agent:ops:reports") == [
        (1, "user", "daily report"),
        (2, "assistant", "echo: daily report"),
    ]
    history = acme.client.get(f"/api/v1/cron-jobs/{job['id']}/runs").json()["results"]
    assert [(r["id"], r["turn_status"]) for r in history] == [(run["id"], "succeeded")]
    assert Turn.objects.get(pk=run["turn_id"]).source == "cron"


# --- Runs that may not happen ---------------------------------------------------------


@pytest.fixture
def ops(acme):
    return AgentFactory(tenant=acme.tenant, slug="ops")


@pytest.mark.django_db
def test_a_job_of_a_suspended_tenant_records_a_skipped_run_and_starts_no_turn(acme, ops):
    job = create_job(acme)
    set_limits(tenant=acme.tenant, is_active=False)

    assert fire_cron_job(tenant="acme", cron_job_id=job["id"]) == "skipped"

    run = CronRun.objects.get(job_id=job["id"])
    assert run.outcome == "skipped" and run.turn is None
    assert run.detail == "The tenant 'acme' is suspended."
    assert not Turn.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("with_sessions", [True, False], ids=["soft-deleted", "deleted"])
def test_a_job_whose_agent_was_deleted_records_a_skipped_run_and_starts_no_turn(
    acme, ops, with_sessions
):
    job = create_job(acme, session_key="agent:ops:main")
    if with_sessions:  # the agent's row stays, marked deleted
        TurnFactory(tenant=acme.tenant, session_key="agent:ops:other", content="hi")
    turns_before = Turn.objects.count()
    services.delete_agent(agent=ops)

    assert fire_cron_job(tenant="acme", cron_job_id=job["id"]) == "skipped"

    run = CronRun.objects.get(job_id=job["id"])
    assert run.outcome == "skipped" and run.turn is None
    assert "deleted" in run.detail
    assert Turn.objects.count() == turns_before
    # Through the API too: run now answers with the skipped run.
    again = acme.client.post(f"/api/v1/cron-jobs/{job['id']}/run")
    assert again.status_code == 202
    assert (again.json()["outcome"], again.json()["number"]) == ("skipped", 2)


@pytest.mark.django_db
def test_a_fire_for_another_tenant_or_a_deleted_job_does_nothing(acme, globex, ops):
    job = create_job(acme)

    assert fire_cron_job(tenant="globex", cron_job_id=job["id"]) is None
    acme.client.delete(f"/api/v1/cron-jobs/{job['id']}")
    assert fire_cron_job(tenant="acme", cron_job_id=job["id"]) is None
    assert not CronRun.objects.exists()


# --- The API and the beat mirror ------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("schedule", "says"),
    [
        ({"cron": "61 * * * *"}, "minute '61'"),
        ({"cron": "0 9 * *"}, "needs 5 fields"),
        ({"cron": "0 0 * * 7"}, "Sunday is 0"),
        ({"cron": "0 0 L * *"}, "day of month 'L'"),
        ({"cron": "0 9 1 * 1"}, "not both"),
        ({"cron": "0 9 * * *", "timezone": "Mars/Olympus"}, "Unknown time zone 'Mars/Olympus'"),
        ({}, "exactly one schedule"),
        ({"cron": "0 9 * * *", "every_seconds": 60}, "got cron and every_seconds"),
        ({"every_seconds": 60, "timezone": "UTC"}, "only applies to a 'cron'"),
        ({"every_seconds": 0}, "every_seconds"),
        ({"at": "2001-01-01T00:00:00Z"}, "in the past"),
        ({"at": "tomorrow"}, "at:"),
        ("0 9 * * *", "schedule:"),
    ],
)
def test_an_invalid_schedule_is_a_400_that_says_what_is_wrong(acme, ops, schedule, says):
    body = {"agent": "ops", "message": "hi", "schedule": schedule}

    response = acme.client.post("/api/v1/cron-jobs", body, format="json")

    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert error["code"] == "invalid_schedule"
    assert says in error["message"]
    assert not CronJob.objects.exists()
    assert not PeriodicTask.objects.filter(task="agents.fire_cron_job").exists()


# --- Tenant limits: how often a job fires, how many jobs -------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("every_seconds", [1, 59])
def test_a_job_firing_more_often_than_the_tenants_minimum_interval_is_a_400(
    acme, ops, every_seconds
):
    body = {"agent": "ops", "message": "hi", "schedule": {"every_seconds": every_seconds}}

    response = acme.client.post("/api/v1/cron-jobs", body, format="json")

    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert error["code"] == "schedule_too_frequent"
    assert "'every_seconds' must be at least 60" in error["message"]
    assert error["details"] == {"min_cron_interval_seconds": 60}
    assert not CronJob.objects.exists()
    assert not PeriodicTask.objects.filter(task="agents.fire_cron_job").exists()


@pytest.mark.django_db
def test_every_minute_is_allowed_and_a_change_to_faster_is_refused(acme, ops):
    every_minute = create_job(acme, schedule={"every_seconds": 60})
    cron_every_minute = create_job(acme, schedule={"cron": "* * * * *"})
    url = f"/api/v1/cron-jobs/{every_minute['id']}"

    faster = acme.client.patch(url, {"schedule": {"every_seconds": 5}}, format="json")

    assert faster.status_code == 400
    assert faster.json()["error"]["code"] == "schedule_too_frequent"
    assert acme.client.get(url).json() == every_minute
    assert beat_entry(every_minute["id"]).interval.every == 60
    assert beat_entry(cron_every_minute["id"]).crontab.minute == "*"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("expression", "accepted"),
    [
        ("*/5 * * * *", True),
        ("0 * * * *", True),
        ("0,5,10 * * * *", True),
        ("55 8 * * *", True),
        ("* * * * *", False),
        ("*/2 * * * *", False),
        ("0,1 9 * * 1-5", False),  # two runs a minute apart, once a day
        ("58 0-23/1 * * *", True),
        ("59 8,9 * * *", True),
        ("59 23 * * *", True),
        ("0,59 0,23 * * *", False),  # 23:59 then 00:00 the next day
    ],
)
def test_a_cron_expression_may_not_fire_twice_within_the_tenants_minimum_interval(
    acme, ops, expression, accepted
):
    set_limits(tenant=acme.tenant, min_cron_interval_seconds=300)
    body = {"agent": "ops", "message": "hi", "schedule": {"cron": expression}}

    response = acme.client.post("/api/v1/cron-jobs", body, format="json")

    if accepted:
        assert response.status_code == 201, response.json()
    else:
        assert response.status_code == 400, response.json()
        error = response.json()["error"]
        assert error["code"] == "schedule_too_frequent"
        assert "the least is 300 s" in error["message"]


@pytest.mark.django_db
def test_a_tenant_past_its_cron_job_limit_gets_a_400_until_it_deletes_one(acme, globex, ops):
    set_limits(tenant=acme.tenant, max_cron_jobs=2)
    first = create_job(acme)
    create_job(acme, enabled=False)  # a paused job counts too
    body = {"agent": "ops", "message": "hi", "schedule": {"every_seconds": 3600}}

    refused = acme.client.post("/api/v1/cron-jobs", body, format="json")

    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["code"] == "cron_job_limit_reached"
    assert "limit of 2 cron jobs" in error["message"]
    assert error["details"] == {"max_cron_jobs": 2}
    assert CronJob.objects.filter(tenant=acme.tenant).count() == 2
    # Another tenant's jobs are its own business.
    AgentFactory(tenant=globex.tenant, slug="ops")
    create_job(globex)

    assert acme.client.delete(f"/api/v1/cron-jobs/{first['id']}").status_code == 204
    create_job(acme)


@pytest.mark.django_db(transaction=True)
def test_jobs_created_all_at_once_stop_at_the_limit(acme, ops):
    set_limits(tenant=acme.tenant, max_cron_jobs=3)
    attempts = 8  # under the database pool's 16 connections
    all_at_once = threading.Barrier(attempts)
    body = {"agent": "ops", "message": "hi", "schedule": {"every_seconds": 3600}}

    def create(_: int) -> int:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {acme.key}")
        all_at_once.wait(timeout=30)
        try:
            return client.post("/api/v1/cron-jobs", body, format="json").status_code
        finally:
            connections.close_all()

    with ThreadPoolExecutor(attempts) as pool:
        answers = list(pool.map(create, range(attempts)))

    assert sorted(answers) == [201] * 3 + [400] * 5
    assert CronJob.objects.filter(tenant=acme.tenant).count() == 3


@pytest.mark.django_db
def test_a_tenant_reads_its_cron_limits(acme):
    limits = acme.client.get("/api/v1/tenant").json()["limits"]

    assert (limits["max_cron_jobs"], limits["min_cron_interval_seconds"]) == (100, 60)


@pytest.mark.django_db
def test_a_bad_change_is_refused_and_leaves_the_job_as_it_was(acme, ops):
    job = create_job(acme, schedule={"cron": "0 9 * * *"})
    url = f"/api/v1/cron-jobs/{job['id']}"

    bad_schedule = acme.client.patch(url, {"schedule": {"cron": "0 25 * * *"}}, format="json")
    bad_key = acme.client.patch(url, {"session_key": "agent:other:main"}, format="json")
    no_agent = acme.client.patch(url, {"agent": "nobody"}, format="json")
    put = acme.client.put(url, {"message": "x"}, format="json")

    assert bad_schedule.status_code == 400
    assert bad_schedule.json()["error"]["code"] == "invalid_schedule"
    assert "hour '25'" in bad_schedule.json()["error"]["message"]
    assert bad_key.json()["error"]["code"] == "invalid_session_key"
    assert no_agent.status_code == 404  # as everywhere else an agent is looked up
    assert no_agent.json()["error"]["code"] == "agent_not_found"
    assert put.status_code == 405
    assert acme.client.get(url).json() == job
    assert beat_entry(job["id"]).crontab.hour == "9"


@pytest.mark.django_db
def test_the_beat_entry_follows_every_create_change_pause_and_delete(acme, ops):
    job = create_job(acme, schedule={"cron": "*/15 8-18 * * mon-fri", "timezone": "Asia/Tokyo"})
    url = f"/api/v1/cron-jobs/{job['id']}"
    entry = beat_entry(job["id"])
    assert entry.task == "agents.fire_cron_job"
    assert entry.kwargs == f'{{"tenant": "acme", "cron_job_id": {job["id"]}}}'
    assert entry.enabled and entry.queue is None  # routed to tenant.acme by its kwargs
    cron_spec = entry.crontab
    spec = (cron_spec.minute, cron_spec.hour, cron_spec.day_of_week, str(cron_spec.timezone))
    assert spec == ("*/15", "8-18", "mon-fri", "Asia/Tokyo")
    assert job["schedule"] == {
        "kind": "cron",
        "cron": "*/15 8-18 * * mon-fri",
        "timezone": "Asia/Tokyo",
        "every_seconds": None,
        "at": None,
    }

    every = acme.client.patch(url, {"schedule": {"every_seconds": 90}}, format="json").json()
    entry = beat_entry(job["id"])
    assert (entry.crontab, entry.interval.every, entry.interval.period) == (None, 90, "seconds")
    assert every["schedule"]["kind"] == "every" and every["schedule"]["cron"] is None

    at = timezone.now() + timedelta(days=1)
    acme.client.patch(url, {"schedule": {"at": at.isoformat()}}, format="json")
    entry = beat_entry(job["id"])
    assert (entry.interval, entry.clocked.clocked_time, entry.one_off) == (None, at, True)

    acme.client.patch(url, {"enabled": False}, format="json")
    assert beat_entry(job["id"]).enabled is False
    acme.client.patch(url, {"enabled": True, "message": "changed"}, format="json")
    assert beat_entry(job["id"]).enabled is True
    assert CronJob.objects.get(pk=job["id"]).message == "changed"

    assert acme.client.delete(url).status_code == 204
    assert not PeriodicTask.objects.filter(name=f"cron-job-{job['id']}").exists()
    assert not ClockedSchedule.objects.exists()


@pytest.mark.django_db
def test_a_deleted_tenant_takes_its_jobs_beat_entries_along(acme, ops):
    job = create_job(acme)

    acme.tenant.delete()

    assert not CronJob.objects.exists()
    assert not PeriodicTask.objects.filter(name=f"cron-job-{job['id']}").exists()


@pytest.mark.django_db
def test_jobs_are_listed_newest_first_with_cursor_pages(acme, ops):
    ids = [create_job(acme, name=f"job {i}")["id"] for i in range(3)]

    first = acme.client.get("/api/v1/cron-jobs?limit=2").json()
    second = acme.client.get(first["next"]).json()

    assert [j["id"] for j in first["results"] + second["results"]] == ids[::-1]
    assert second["next"] is None


@pytest.mark.django_db
def test_interval_next_runs_count_from_the_last_scheduled_run(acme, ops):
    job = create_job(acme, schedule={"every_seconds": 600})
    fire_cron_job(tenant="acme", cron_job_id=job["id"])
    fired_at = CronRun.objects.get(job_id=job["id"]).created_at

    shown = acme.client.get(f"/api/v1/cron-jobs/{job['id']}").json()

    expected = [fired_at + timedelta(seconds=600 * i) for i in range(1, 6)]
    shown_times = parse(shown["next_runs"])
    assert len(shown_times) == 5
    assert all(
        abs(t - e) < timedelta(seconds=1) for t, e in zip(shown_times, expected, strict=True)
    )
    assert shown["run_count"] == 1


# --- Isolation and docs ---------------------------------------------------------------


@pytest.mark.django_db
def test_another_tenants_cron_jobs_are_404_and_never_listed(acme, globex):
    AgentFactory(tenant=globex.tenant, slug="secret")
    theirs = create_job(globex, agent="secret", message="classified")
    AgentFactory(tenant=acme.tenant, slug="ops")
    base = f"/api/v1/cron-jobs/{theirs['id']}"
    calls = [
        ("get", base),
        ("patch", base),
        ("delete", base),
        ("post", f"{base}/run"),
        ("get", f"{base}/runs"),
    ]
    for method, url in calls:
        response = getattr(acme.client, method)(url, {"enabled": False}, format="json")
        assert response.status_code == 404, (method, url, response.status_code)
        assert response.json()["error"]["code"] == "cron_job_not_found"

    assert acme.client.get("/api/v1/cron-jobs").json()["results"] == []
    stolen = acme.client.post(
        "/api/v1/cron-jobs",
        {"agent": "secret", "message": "hi", "schedule": {"every_seconds": 60}},
        format="json",
    )
    assert stolen.status_code == 404
    assert stolen.json()["error"]["code"] == "agent_not_found"
    # Nothing of globex's changed or ran.
    assert globex.client.get(base).json() == theirs
    assert not CronRun.objects.exists()


@pytest.mark.django_db
def test_the_cron_endpoints_are_in_the_schema():
    schema = Client().get("/api/schema/", HTTP_ACCEPT="application/json").json()
    for path in [
        "/api/v1/cron-jobs",
        "/api/v1/cron-jobs/{job_id}",
        "/api/v1/cron-jobs/{job_id}/run",
        "/api/v1/cron-jobs/{job_id}/runs",
    ]:
        assert path in schema["paths"], path
    assert set(schema["paths"]["/api/v1/cron-jobs/{job_id}"]) >= {"get", "patch", "delete"}
    assert "put" not in schema["paths"]["/api/v1/cron-jobs/{job_id}"]


# --- Admin ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_admin_runs_a_job_now_and_checks_schedules_like_the_api(acme, ops, admin_client):
    job = create_job(acme)

    response = admin_client.post(
        "/admin/agents/cronjob/",
        {"action": "run_now", "_selected_action": [job["id"]]},
        follow=True,
    )

    assert response.status_code == 200
    run = CronRun.objects.get(job_id=job["id"])
    assert (run.trigger, run.outcome) == ("manual", "submitted")
    assert f"Job {job['id']}: submitted, turn {run.turn_id}" in response.content.decode()

    form = {
        "tenant": acme.tenant.pk,
        "agent": ops.pk,
        "message": "hi",
        "enabled": "on",
        "runs-TOTAL_FORMS": "0",  # the run history inline
        "runs-INITIAL_FORMS": "0",
    }
    bad = admin_client.post("/admin/agents/cronjob/add/", {**form, "cron": "0 9 * * 8"})
    assert bad.status_code == 200  # the form again, with the error
    assert "day of week &#x27;8&#x27;" in bad.content.decode()
    good = admin_client.post("/admin/agents/cronjob/add/", {**form, "every_seconds": "60"})
    assert good.status_code == 302, good.context["errors"]
    added = CronJob.objects.exclude(pk=job["id"]).get()
    assert beat_entry(added.pk).interval.every == 60


@pytest.mark.django_db
def test_the_admin_edits_a_tenants_cron_limits_and_the_cron_form_enforces_them(
    acme, ops, admin_client
):
    tenant = acme.tenant
    page = admin_client.get(f"/admin/tenants/tenant/{tenant.pk}/change/")
    form = {
        name: value
        for name, value in page.context["adminform"].form.initial.items()
        if name in page.context["adminform"].form.fields
    }
    inline = {"api_keys-TOTAL_FORMS": "0", "api_keys-INITIAL_FORMS": "0"}
    changed = admin_client.post(
        f"/admin/tenants/tenant/{tenant.pk}/change/",
        {
            **form,
            **inline,
            "is_active": "on",
            "max_cron_jobs": "1",
            "min_cron_interval_seconds": "30",
        },
    )
    assert changed.status_code == 302, changed.context["adminform"].form.errors
    tenant.refresh_from_db()
    assert (tenant.max_cron_jobs, tenant.min_cron_interval_seconds) == (1, 30)

    job_form = {
        "tenant": tenant.pk,
        "agent": ops.pk,
        "message": "hi",
        "enabled": "on",
        "runs-TOTAL_FORMS": "0",
        "runs-INITIAL_FORMS": "0",
    }
    too_often = admin_client.post("/admin/agents/cronjob/add/", {**job_form, "every_seconds": "10"})
    assert "&#x27;every_seconds&#x27; must be at least 30" in too_often.content.decode()
    good = admin_client.post("/admin/agents/cronjob/add/", {**job_form, "every_seconds": "30"})
    assert good.status_code == 302, good.context["errors"]
    one_too_many = admin_client.post(
        "/admin/agents/cronjob/add/", {**job_form, "every_seconds": "30"}
    )
    assert "limit of 1 cron jobs" in one_too_many.content.decode()
    assert CronJob.objects.count() == 1
