"""Cron jobs that post their answers to Slack or Discord (a job's `delivery`).

The runs are fired by a real celery-beat or "run now", the turns run on the real worker,
and the worker posts to the fake Slack/Discord API (its URLs are in the worker's
environment, see `platform_env`), which records what it received.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from agents.models import ChannelDelivery, CronJob, CronRun
from tests.agents.channels.webhooks import BOT_TOKEN, DISCORD_BOT_TOKEN, is_slack_post
from tests.conftest import start_beat
from tests.factories import AgentFactory, ChannelBindingFactory
from tests.support import wait_for_turn, wait_until

DISCORD_CHANNEL = "1180000000000000001"
LONG_ANSWER = "\n\n".join(f"Paragraph {i}. " + " ".join(["word"] * 150) for i in range(8))


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


def run_now(tenant_fixture, job: dict) -> dict:
    response = tenant_fixture.client.post(f"/api/v1/cron-jobs/{job['id']}/run")
    assert response.status_code == 202, response.json()
    return response.json()


def run_history(tenant_fixture, job: dict) -> list[dict]:
    return tenant_fixture.client.get(f"/api/v1/cron-jobs/{job['id']}/runs").json()["results"]


def settled_delivery(tenant_fixture, job: dict, status: str = "delivered") -> dict:
    """The newest run as the API shows it, once its delivery has `status`."""

    def settled():
        runs = run_history(tenant_fixture, job)
        delivery = runs[0]["delivery"] if runs else None
        return runs[0] if delivery and delivery["status"] == status else None

    return wait_until(settled, timeout=30, message=f"the run's delivery to be {status}")


# --- End to end -------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("worker", "beat")
def test_a_scheduled_run_posts_its_answer_in_the_slack_channel_and_thread(
    acme, slack_binding, channel_api
):
    delivery = {
        "binding": slack_binding.pk,
        "channel": "C0DIGEST",
        "thread_ts": "1700000000.000100",
    }
    at = timezone.now() + timedelta(seconds=2)
    job = create_job(
        acme, message="daily digest", schedule={"at": at.isoformat()}, delivery=delivery
    )
    assert job["delivery"] == delivery

    [post] = channel_api.wait_for(is_slack_post, timeout=40)

    assert post.headers["authorization"] == f"Bearer {BOT_TOKEN}"
    assert post.json == {
        "channel": "C0DIGEST",
        "thread_ts": "1700000000.000100",
        "text": "echo: daily digest",
    }
    run = settled_delivery(acme, job)
    assert (run["trigger"], run["outcome"], run["turn_status"]) == (
        "schedule",
        "submitted",
        "succeeded",
    )
    assert run["detail"] == ""
    shown = run["delivery"]
    assert shown["delivered_at"] is not None
    del shown["delivered_at"]
    assert shown == {
        "binding": slack_binding.pk,
        "channel": "C0DIGEST",
        "status": "delivered",
        "attempts": 1,
        "parts_sent": 1,
        "failed_at": None,
        "error": "",
    }
    assert len([r for r in channel_api.requests if is_slack_post(r)]) == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("worker")
def test_run_now_posts_a_long_answer_in_the_discord_channel_in_pieces(
    acme, discord_binding, channel_api, model
):
    model.add_rule(match="essay", reply=LONG_ANSWER)
    job = create_job(
        acme,
        message="the weekly essay",
        delivery={"binding": discord_binding.pk, "channel": DISCORD_CHANNEL},
    )
    assert job["delivery"] == {
        "binding": discord_binding.pk,
        "channel": DISCORD_CHANNEL,
        "thread_ts": None,
    }

    started = run_now(acme, job)

    assert started["outcome"] == "submitted"
    assert started["delivery"]["status"] in ("pending", "delivered")
    run = settled_delivery(acme, job)
    calls = [r for r in channel_api.requests if r.api == "discord"]
    assert len(calls) >= 2  # Discord takes 2,000 characters a message
    assert {(r.method, r.path) for r in calls} == {
        ("POST", f"/channels/{DISCORD_CHANNEL}/messages")
    }
    assert {r.headers["authorization"] for r in calls} == {f"Bot {DISCORD_BOT_TOKEN}"}
    assert all(len(r.json["content"]) <= 2000 for r in calls)
    assert all(r.json["allowed_mentions"] == {"parse": []} for r in calls)
    assert "\n\n".join(r.json["content"] for r in calls) == LONG_ANSWER.strip()
    assert run["delivery"]["parts_sent"] == len(calls)
    assert run["delivery"]["channel"] == DISCORD_CHANNEL


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("worker")
def test_a_failed_run_posts_a_short_note_naming_the_job(acme, slack_binding, channel_api, model):
    model.add_rule(match="boom", status=400, reply="bad request from the model")
    job = create_job(
        acme,
        name="nightly report",
        message="boom",
        delivery={"binding": slack_binding.pk, "channel": "C0OPS"},
    )

    turn = wait_for_turn(run_now(acme, job)["turn_id"])

    assert turn.status == "failed"
    [post] = channel_api.wait_for(is_slack_post)
    assert post.json == {
        "channel": "C0OPS",
        "text": f"Scheduled job 'nightly report' failed this time ({turn.error_code}).",
    }
    assert "bad request" not in post.json["text"]  # the code only, never the error's text
    assert settled_delivery(acme, job)["turn_status"] == "failed"


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("worker")
def test_a_refused_post_shows_as_failed_in_the_run_history(acme, slack_binding, channel_api):
    channel_api.fail(
        path=r"chat\.postMessage", status=200, body={"ok": False, "error": "not_in_channel"}
    )
    job = create_job(acme, delivery={"binding": slack_binding.pk, "channel": "C0PRIVATE"})

    run_now(acme, job)

    run = settled_delivery(acme, job, status="failed")
    assert run["turn_status"] == "succeeded"
    assert run["delivery"]["error"] == "slack: not_in_channel"
    assert run["delivery"]["attempts"] == 1  # a refusal is final: not retried
    assert run["delivery"]["failed_at"] is not None and run["delivery"]["delivered_at"] is None
    assert len(channel_api.requests) == 1


# --- What may be stored -----------------------------------------------------------------


@pytest.mark.django_db
def test_a_delivery_to_another_tenants_binding_is_refused_and_nothing_is_stored(
    acme, globex, agent
):
    AgentFactory(tenant=globex.tenant, slug="ops")
    theirs = ChannelBindingFactory(
        tenant=globex.tenant,
        kind="slack",
        agent="ops",
        signing_secret="their-secret",
        bot_token="xoxb-globex",
    )
    absent = theirs.pk + 1000
    body = {"agent": "ops", "message": "hi", "schedule": {"every_seconds": 60}}

    stolen = acme.client.post(
        "/api/v1/cron-jobs",
        {**body, "delivery": {"binding": theirs.pk, "channel": "C1"}},
        format="json",
    )
    unknown = acme.client.post(
        "/api/v1/cron-jobs",
        {**body, "delivery": {"binding": absent, "channel": "C1"}},
        format="json",
    )

    assert (stolen.status_code, unknown.status_code) == (400, 400)
    assert stolen.json()["error"] == {
        "code": "channel_binding_not_found",
        "message": f"There is no channel binding {theirs.pk}.",
        "details": {"binding": theirs.pk},
    }
    # It reads exactly like an id that does not exist: nothing about globex's binding.
    assert unknown.json()["error"]["message"] == f"There is no channel binding {absent}."
    assert "slack" not in stolen.content.decode() and "globex" not in stolen.content.decode()
    assert not CronJob.objects.exists()
    assert not PeriodicTask.objects.filter(task="agents.fire_cron_job").exists()

    # Nor can an existing job be pointed at it.
    job = create_job(acme)
    url = f"/api/v1/cron-jobs/{job['id']}"
    patched = acme.client.patch(
        url, {"delivery": {"binding": theirs.pk, "channel": "C1"}}, format="json"
    )
    assert patched.status_code == 400
    assert patched.json()["error"]["code"] == "channel_binding_not_found"
    assert acme.client.get(url).json() == job
    assert CronJob.objects.get().delivery is None
    run_now(acme, job)
    assert not ChannelDelivery.objects.exists()


@pytest.fixture
def tokenless(acme, agent):
    return ChannelBindingFactory(
        tenant=acme.tenant, kind="slack", agent="ops", signing_secret="s", bot_token=""
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("delivery", "says"),
    [
        ({"binding": "slack", "channel": "C1"}, "binding:"),
        ({"channel": "C1"}, "binding: This field is required."),
        ({"binding": "SLACK"}, "channel: This field is required."),
        ({"binding": "SLACK", "channel": "#general"}, "not a Slack channel id"),
        ({"binding": "SLACK", "channel": "C1", "thread_ts": "yesterday"}, "not a Slack message ts"),
        ({"binding": "DISCORD", "channel": "general"}, "not a Discord channel id"),
        ({"binding": "DISCORD", "channel": DISCORD_CHANNEL, "thread_ts": "1.2"}, "is for Slack"),
        ({"binding": "TOKENLESS", "channel": "C1"}, "has no bot token"),
        (["C1"], "delivery:"),
    ],
)
def test_an_invalid_delivery_is_a_400_that_says_what_is_wrong(
    acme, slack_binding, discord_binding, tokenless, delivery, says
):
    ids = {"SLACK": slack_binding.pk, "DISCORD": discord_binding.pk, "TOKENLESS": tokenless.pk}
    if isinstance(delivery, dict) and delivery.get("binding") in ids:
        delivery = {**delivery, "binding": ids[delivery["binding"]]}
    body = {"agent": "ops", "message": "hi", "schedule": {"every_seconds": 60}}

    response = acme.client.post("/api/v1/cron-jobs", {**body, "delivery": delivery}, format="json")

    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert error["code"] == "invalid_delivery"
    assert says in error["message"]
    assert not CronJob.objects.exists()


@pytest.mark.django_db
def test_a_run_whose_binding_was_deleted_is_sent_and_says_it_was_not_delivered(
    acme, slack_binding, channel_api
):
    job = create_job(acme, delivery={"binding": slack_binding.pk, "channel": "C1"})
    binding_id = slack_binding.pk
    slack_binding.delete()

    run = run_now(acme, job)

    assert (run["outcome"], run["delivery"]) == ("submitted", None)
    assert run["detail"] == f"Not delivered: There is no channel binding {binding_id}."
    assert not ChannelDelivery.objects.exists()
    url = f"/api/v1/cron-jobs/{job['id']}"
    half = acme.client.patch(url, {"delivery": {"channel": "C2"}}, format="json").json()
    assert half["error"]["code"] == "invalid_delivery"
    assert half["error"]["message"] == "'binding' must be the id of one of your channel bindings."
    # Setting the delivery to null clears it; the next run is not meant to be delivered.
    assert acme.client.patch(url, {"delivery": None}, format="json").json()["delivery"] is None
    assert run_now(acme, job)["detail"] == ""
    assert CronRun.objects.count() == 2


@pytest.mark.django_db
def test_the_delivery_shapes_are_in_the_schema():
    schema = Client().get("/api/schema/", HTTP_ACCEPT="application/json").json()
    components = schema["components"]["schemas"]

    delivery = components["CronDeliveryRequest"]
    assert set(delivery["properties"]) == {"binding", "channel", "thread_ts"}
    assert set(delivery["required"]) == {"binding", "channel"}
    assert components["CronJob"]["properties"]["delivery"]
    run_delivery = components["CronRunDelivery"]["properties"]
    assert {"status", "attempts", "delivered_at", "failed_at", "error"} <= set(run_delivery)
    assert "delivery" in components["CronRun"]["properties"]


@pytest.mark.django_db
def test_the_admin_checks_a_delivery_like_the_api_and_shows_how_runs_posted(
    acme, globex, slack_binding, admin_client
):
    AgentFactory(tenant=globex.tenant, slug="ops")
    theirs = ChannelBindingFactory(
        tenant=globex.tenant, kind="slack", agent="ops", signing_secret="s", bot_token="xoxb-g"
    )
    form = {
        "tenant": acme.tenant.pk,
        "agent": slack_binding.agent.pk,
        "message": "hi",
        "every_seconds": "60",
        "enabled": "on",
        "runs-TOTAL_FORMS": "0",
        "runs-INITIAL_FORMS": "0",
    }

    stolen = admin_client.post(
        "/admin/agents/cronjob/add/",
        {**form, "delivery": f'{{"binding": {theirs.pk}, "channel": "C1"}}'},
    )
    good = admin_client.post(
        "/admin/agents/cronjob/add/",
        {**form, "delivery": f'{{"binding": {slack_binding.pk}, "channel": " C1 "}}'},
    )

    assert stolen.status_code == 200  # the form again, with the error
    assert f"There is no channel binding {theirs.pk}." in stolen.content.decode()
    assert good.status_code == 302, good.context["errors"]
    job = CronJob.objects.get()
    assert job.delivery == {"binding": slack_binding.pk, "channel": "C1", "thread_ts": None}
    run = run_now(acme, {"id": job.pk})
    assert run["delivery"]["status"] == "pending"  # no worker here: the turn stays queued
    page = admin_client.get(f"/admin/agents/cronjob/{job.pk}/change/").content.decode()
    assert re.search(r'<td class="field-delivery">\s*<p>pending</p>', page)
