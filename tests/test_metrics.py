"""GET /metrics: the telemetry events of every process, summed, in the Prometheus text format.

The multiprocess directory outlives a test (and a test run started without `make test`), so
each test uses a tenant slug of its own or compares before and after.
"""

import uuid

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from beamclaw.telemetry import emit
from tests.conftest import TenantFixture
from tests.support import make_agent, send, wait_for_turn, wait_until

pytestmark = pytest.mark.django_db


def scrape(client: Client | None = None, **headers) -> str:
    response = (client or Client()).get("/metrics", headers=headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    return response.content.decode()


def value(text: str, name: str, **labels: str) -> float:
    """The sample `name{labels}` (0 when absent), read by Prometheus' own parser."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


@pytest.fixture(autouse=True)
def _metrics_served_without_a_token(settings):
    """What an operator opts into behind a firewall (the token tests set one)."""
    settings.METRICS_PUBLIC = True


@pytest.fixture
def tenant():
    return TenantFixture(f"m-{uuid.uuid4().hex[:10]}").tenant


def labels(tenant, **extra):
    return {
        "tenant_id": tenant.pk,
        "tenant": tenant.slug,
        "agent_id": None,
        "agent": "ops",
        "turn_id": None,  # metering stores it: a made-up id would break its foreign key
        **extra,
    }


def test_events_show_up_as_counters_with_the_tenant_label(tenant):
    emit("turn.started", **labels(tenant), session_id=1, attempt=1)
    emit(
        "provider.call",
        **labels(tenant),
        provider="openai",
        model="gpt-4o-mini",
        input_tokens=120,
        output_tokens=30,
        latency_s=0.4,
        attempts=1,
        ok=True,
        error_code="",
    )
    emit("tool.call", **labels(tenant), tool="calculator", ok=True, error_code="", duration_ms=3)
    emit(
        "turn.finished",
        **labels(tenant),
        status="succeeded",
        error_code="",
        input_tokens=120,
        output_tokens=30,
        iterations=1,
        duration_s=1.5,
    )
    emit("limit.rejected", **labels(tenant), limit="rate", detail="over 600/min")

    text = scrape()

    slug = tenant.slug
    assert f'beamclaw_turns_started_total{{tenant="{slug}"}} 1.0' in text
    assert "# TYPE beamclaw_tokens_total counter" in text
    assert value(text, "beamclaw_tokens_total", tenant=slug, direction="in") == 120
    assert value(text, "beamclaw_tokens_total", tenant=slug, direction="out") == 30
    assert value(text, "beamclaw_turns_finished_total", tenant=slug, status="succeeded") == 1
    assert value(text, "beamclaw_limit_rejections_total", tenant=slug, limit="rate") == 1
    assert value(text, "beamclaw_turns_running", tenant=slug) == 0
    provider = {"provider": "openai", "model": "gpt-4o-mini"}
    assert value(text, "beamclaw_provider_calls_total", **provider, ok="true") >= 1
    assert value(text, "beamclaw_provider_latency_seconds_bucket", **provider, le="0.5") >= 1
    assert value(text, "beamclaw_turn_duration_seconds_count", status="succeeded") >= 1
    assert value(text, "beamclaw_tool_calls_total", tool="calculator", ok="true") >= 1
    # Only our own metrics, and no id of a turn, session or agent as a label.
    names = {family.name for family in text_string_to_metric_families(text)}
    assert names and all(name.startswith("beamclaw_") for name in names)
    assert "turn_id" not in text and "session_id" not in text and "agent_id" not in text


def test_turns_running_counts_a_turn_until_it_finishes(tenant):
    emit("turn.started", **labels(tenant, turn_id=7), session_id=1, attempt=1)
    assert value(scrape(), "beamclaw_turns_running", tenant=tenant.slug) == 1

    emit(
        "turn.finished",
        **labels(tenant, turn_id=7),
        status="failed",
        error_code="budget_exceeded",
        input_tokens=0,
        output_tokens=0,
        iterations=0,
        duration_s=0.1,
    )
    assert value(scrape(), "beamclaw_turns_running", tenant=tenant.slug) == 0


def test_a_turn_that_leaves_its_task_unfinished_stops_counting_as_running(tenant):
    from celery import signals

    emit("turn.started", **labels(tenant, turn_id=8), session_id=1, attempt=1)
    # Parked by a limit or waiting for sub-agents: no turn.finished, the task just ends.
    signals.task_postrun.send(sender=None, task_id="t", task=None, args=(), kwargs={})

    assert value(scrape(), "beamclaw_turns_running", tenant=tenant.slug) == 0


def test_labels_stay_bounded_whatever_the_model_or_tool_is_called(tenant):
    before = scrape()
    other = {"provider": "openai", "model": "other", "ok": "false"}
    unknown = {"tool": "unknown", "ok": "false"}
    emit(
        "provider.call",
        **labels(tenant),
        provider="openai",
        model=f"made-up-{uuid.uuid4().hex}",
        input_tokens=0,
        output_tokens=0,
        latency_s=0.1,
        attempts=3,
        ok=False,
        error_code="provider_unavailable",
    )
    emit(
        "tool.call",
        **labels(tenant),
        tool=f"rm_rf_{uuid.uuid4().hex}",
        ok=False,
        error_code="unknown_tool",
        duration_ms=0,
    )

    after = scrape()

    assert "made-up-" not in after and "rm_rf_" not in after
    calls = "beamclaw_provider_calls_total"
    assert value(after, calls, **other) == value(before, calls, **other) + 1
    tools = "beamclaw_tool_calls_total"
    assert value(after, tools, **unknown) == value(before, tools, **unknown) + 1


def test_with_a_metrics_token_a_missing_or_wrong_token_gets_401(settings):
    settings.METRICS_TOKEN = "s3cret-token"
    client = Client()

    missing = client.get("/metrics")
    wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
    basic = client.get("/metrics", headers={"Authorization": "Basic czNjcmV0LXRva2Vu"})

    for response in (missing, wrong, basic):
        assert response.status_code == 401
        assert response["WWW-Authenticate"].startswith("Bearer")
        assert set(response.json()["error"]) == {"code", "message", "details"}
    assert missing.json()["error"]["code"] == "authentication_required"
    assert wrong.json()["error"]["code"] == "invalid_metrics_token"
    assert (
        client.get("/metrics", headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
    )


def test_without_a_metrics_token_the_endpoint_is_open(settings):
    settings.METRICS_TOKEN = ""

    assert Client().get("/metrics").status_code == 200


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("worker")
def test_a_workers_metrics_are_served_by_this_process(model):
    """The turn runs in the worker process; its samples reach /metrics through the files."""
    owner = TenantFixture(f"w-{uuid.uuid4().hex[:10]}")
    make_agent(owner.tenant, model)

    turn = wait_for_turn(send(owner, "agent:ops:main", "hello")["turn"]["id"])

    assert turn.status == "succeeded"
    slug = owner.tenant.slug

    def counted():
        text = scrape()
        return text if value(text, "beamclaw_turns_finished_total", tenant=slug) else None

    text = wait_until(counted, timeout=5, message="the worker's turn to be counted")
    assert value(text, "beamclaw_turns_started_total", tenant=slug) == 1
    assert value(text, "beamclaw_tokens_total", tenant=slug, direction="in") == turn.input_tokens
    assert value(text, "beamclaw_tokens_total", tenant=slug, direction="out") == (
        turn.output_tokens
    )
    assert value(text, "beamclaw_turns_running", tenant=slug) == 0


def test_without_a_token_metrics_are_refused_unless_debug_or_served_to_anyone(settings):
    settings.METRICS_TOKEN = ""
    settings.METRICS_PUBLIC = False
    settings.DEBUG = False

    refused = Client().get("/metrics")

    assert refused.status_code == 403
    error = refused.json()["error"]
    assert error["code"] == "metrics_not_configured"
    assert "METRICS_TOKEN" in error["message"]
    assert b"beamclaw_" not in refused.content

    settings.METRICS_PUBLIC = True
    scrape()  # 200, in the Prometheus text format
    settings.METRICS_PUBLIC = False
    settings.DEBUG = True
    scrape()
