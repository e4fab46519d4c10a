"""Metering and the usage API: a record per successful model call, priced, summed per tenant."""

import json
import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from agents import services
from agents.models import Turn
from agents.runtime.loop import run_session
from beamclaw import telemetry
from tenants import metering
from tenants.models import UsageRecord
from testing.fake_model import default_reply
from tests.support import make_agent, send, wait_for_turn


def provider_call(tenant, agent=None, *, model="gpt-4o-mini", tokens=(100, 10)):
    """The usage record the turn loop writes after a successful model call."""
    record = metering.usage_record(
        tenant_id=tenant.pk,
        agent_id=agent.pk if agent else None,
        turn_id=None,
        provider="openai",
        model=model,
        input_tokens=tokens[0],
        output_tokens=tokens[1],
    )
    record.save()
    return record


def run_here(tenant_fixture, session_key: str, content: str) -> Turn:
    """Submit a message and run its turn in this thread (the test's transaction never
    commits, so no worker is triggered)."""
    tenant = tenant_fixture.tenant
    submission = services.submit_message(tenant=tenant, session_key=session_key, content=content)
    run_session(tenant.pk, tenant.slug, submission.turn.session_id)
    return Turn.objects.get(pk=submission.turn.pk)


def usage(tenant_fixture, **params):
    response = tenant_fixture.client.get("/api/v1/usage", params)
    assert response.status_code == 200, response.json()
    return response.json()


@pytest.fixture
def prices(settings):
    settings.MODEL_PRICES = {
        "small": {"input": Decimal("0.50"), "output": Decimal("1.50")},
        "big": {"input": 3, "output": 15.0},  # overrides may hold ints and floats
    }
    settings.DEFAULT_MODEL_PRICE = {"input": Decimal("1"), "output": Decimal("1")}


@pytest.mark.django_db
def test_usage_is_summed_per_agent_model_or_day(acme, prices):
    ops = services.create_agent(tenant=acme.tenant, slug="ops")
    sales = services.create_agent(tenant=acme.tenant, slug="sales")
    provider_call(acme.tenant, ops, model="small", tokens=(1000, 100))
    provider_call(acme.tenant, ops, model="big", tokens=(2000, 200))
    old = provider_call(acme.tenant, sales, model="small", tokens=(4000, 400))
    yesterday = timezone.now() - timedelta(days=1)
    UsageRecord.objects.filter(pk=old.pk).update(created_at=yesterday)
    period = {"start": (yesterday - timedelta(days=1)).isoformat()}

    by_agent = usage(acme, group_by="agent", **period)
    by_model = usage(acme, group_by="model", **period)
    by_day = usage(acme, group_by="day", **period)

    assert [
        (g["key"], g["input_tokens"], g["output_tokens"], g["calls"]) for g in by_agent["groups"]
    ] == [("ops", 3000, 300, 2), ("sales", 4000, 400, 1)]
    assert [(g["key"], g["total_tokens"]) for g in by_model["groups"]] == [
        ("big", 2200),
        ("small", 5500),
    ]
    assert [(g["key"], g["calls"]) for g in by_day["groups"]] == [
        (yesterday.date().isoformat(), 1),
        (timezone.now().date().isoformat(), 2),
    ]
    for body in (by_agent, by_model, by_day):
        assert body["totals"] == {
            "input_tokens": 7000,
            "output_tokens": 700,
            "total_tokens": 7700,
            "cost": "0.012250",  # (5000*0.5 + 500*1.5 + 2000*3 + 200*15) / 1M tokens
            "calls": 3,
        }
    assert by_agent["group_by"] == "agent" and by_day["group_by"] == "day"


@pytest.mark.django_db
def test_each_call_is_priced_from_the_price_table(acme, prices):
    small = provider_call(acme.tenant, model="small", tokens=(1_000_000, 2_000_000))
    snapshot = provider_call(acme.tenant, model="big-2026-01-01", tokens=(1000, 1000))
    unknown = provider_call(acme.tenant, model="mystery", tokens=(500_000, 0))

    assert small.cost == Decimal("3.5")  # 1M in at 0.50 + 2M out at 1.50
    assert snapshot.cost == Decimal("0.018")  # a dated snapshot costs what its model costs
    assert unknown.cost == Decimal("0.5")  # DEFAULT_MODEL_PRICE
    by_model = {g["key"]: g["cost"] for g in usage(acme, group_by="model")["groups"]}
    assert by_model == {"small": "3.500000", "big-2026-01-01": "0.018000", "mystery": "0.500000"}


@pytest.mark.django_db
def test_the_default_prices_are_real_ones(acme):
    record = provider_call(acme.tenant, model="gpt-4o-mini", tokens=(1_000_000, 1_000_000))
    sonnet = provider_call(acme.tenant, model="claude-sonnet-4-20250514", tokens=(1000, 1000))

    assert record.cost == Decimal("0.75")
    assert sonnet.cost == Decimal("0.018")


@pytest.mark.django_db
def test_a_failed_call_is_not_metered(acme, agent, model):
    model.add_rule(status=400, reply="bad request")

    turn = run_here(acme, "agent:ops:main", "hello")

    assert turn.status == "failed"
    assert not UsageRecord.objects.exists()
    assert usage(acme)["totals"]["calls"] == 0


@pytest.mark.django_db
def test_model_calls_are_on_the_ledger_even_when_every_telemetry_handler_fails(
    acme, agent, model, monkeypatch
):
    def broken(event, metadata):
        raise RuntimeError("handler bug")

    # Telemetry only counts and logs; a failing handler must not lose money.
    monkeypatch.setattr(telemetry, "_handlers", defaultdict(list, {telemetry.ALL: [broken]}))

    turn = run_here(acme, "agent:ops:main", "hello")

    assert turn.status == "succeeded"
    [record] = UsageRecord.objects.filter(tenant=acme.tenant)
    assert (record.turn_id, record.agent_id, record.model) == (turn.pk, agent.pk, "fake-1")
    assert (record.input_tokens, record.output_tokens) == (turn.input_tokens, turn.output_tokens)
    assert record.input_tokens > 0
    assert usage(acme)["totals"]["calls"] == 1


@pytest.mark.django_db
def test_another_tenants_usage_is_never_included(acme, globex):
    mine = services.create_agent(tenant=acme.tenant, slug="ops")
    theirs = services.create_agent(tenant=globex.tenant, slug="ops")
    provider_call(acme.tenant, mine, tokens=(10, 1))
    provider_call(globex.tenant, theirs, tokens=(5000, 500))
    provider_call(globex.tenant, None, model="gpt-4o", tokens=(5000, 500))

    for group_by in ("agent", "model", "day"):
        body = usage(acme, group_by=group_by)
        assert body["totals"]["total_tokens"] == 11
        assert sum(g["total_tokens"] for g in body["groups"]) == 11
    assert usage(globex)["totals"]["total_tokens"] == 11000


@pytest.mark.django_db
def test_the_period_defaults_to_this_month_so_far(acme):
    provider_call(acme.tenant, tokens=(10, 1))
    last_month = provider_call(acme.tenant, tokens=(1000, 100))
    month_start = timezone.now().replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    UsageRecord.objects.filter(pk=last_month.pk).update(
        created_at=month_start - timedelta(seconds=1)
    )

    body = usage(acme)

    assert body["totals"]["total_tokens"] == 11
    assert datetime.fromisoformat(body["start"]) == month_start
    assert timezone.now() - datetime.fromisoformat(body["end"]) < timedelta(seconds=10)
    assert body["group_by"] == "agent"


@pytest.mark.django_db
def test_an_end_date_includes_that_whole_day_and_a_start_date_starts_at_midnight(acme):
    record = provider_call(acme.tenant, tokens=(10, 1))
    late = datetime(2026, 3, 31, 23, 59, tzinfo=UTC)
    UsageRecord.objects.filter(pk=record.pk).update(created_at=late)

    body = usage(acme, start="2026-03-31", end="2026-03-31", group_by="day")

    assert body["start"] == "2026-03-31T00:00:00Z"
    assert body["end"] == "2026-04-01T00:00:00Z"
    assert body["groups"] == [
        {
            "input_tokens": 10,
            "output_tokens": 1,
            "total_tokens": 11,
            "cost": "0.000002",
            "calls": 1,
            "key": "2026-03-31",
        }
    ]
    assert usage(acme, start="2026-04-01T00:00:00+00:00", end="2026-05-01")["groups"] == []
    assert usage(acme, start="2026-03-31T23:59:30", end="2026-04-01")["groups"] == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"start": "yesterday"}, "start"),
        ({"end": "2026-02-30"}, "end"),
        ({"start": "2026-13-01T00:00:00Z"}, "start"),
        ({"group_by": "tenant"}, "group_by"),
        ({"start": "2026-05-02", "end": "2026-05-01"}, "end"),
    ],
)
def test_a_bad_query_answers_400_invalid_usage_query(acme, params, field):
    response = acme.client.get("/api/v1/usage", params)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_usage_query"
    assert error["message"].startswith(f"{field}: ")
    assert field in error["details"]


@pytest.mark.django_db
def test_usage_needs_an_api_key(client):
    response = client.get("/api/v1/usage")

    assert response.status_code == 401


@pytest.mark.django_db
def test_the_usage_endpoint_is_documented(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()

    operation = schema["paths"]["/api/v1/usage"]["get"]
    assert {p["name"] for p in operation["parameters"]} == {"start", "end", "group_by"}
    assert "200" in operation["responses"]


# --- End to end: a real worker, the fake model server -------------------------------------

TOOL_ARGUMENTS = {"expression": "6*7"}


def reported_usage(record: dict) -> tuple[int, int]:
    """The usage the fake model server put in its answer to this request (its formula:
    characters // 4 + 1, of the whole conversation in, of the reply and calls out)."""
    spoken = sum(len(m["content"]) for m in record["messages"])
    if re.search(r"what is 6\*7", record["messages"][-1]["content"]):
        written = len(json.dumps(TOOL_ARGUMENTS))  # the scripted tool call, no text
    else:
        written = len(default_reply(record["messages"]))
    return spoken // 4 + 1, written // 4 + 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("worker")
def test_usage_records_sum_to_the_tokens_the_model_server_reported(acme, model):
    make_agent(acme.tenant, model, slug="calc", model="gpt-4o-mini", tools=["calculator"])
    model.add_rule(
        match=r"what is 6\*7", tool_calls=[{"name": "calculator", "arguments": TOOL_ARGUMENTS}]
    )
    # A 429 first: the failed attempt is part of the call and bills nothing.
    model.add_rule(match=r"^again", status=429, headers={"Retry-After": "0"}, times=1)

    turns = [
        wait_for_turn(send(acme, "agent:calc:main", text)["turn"]["id"])
        for text in ("hello there", "what is 6*7?", "again, please")
    ]

    assert [t.status for t in turns] == ["succeeded"] * 3
    assert [r["status"] for r in model.requests].count(429) == 1
    answered = [r for r in model.requests if r["status"] == 200]
    assert len(answered) == 4  # hello; the tool call and the answer to its result; again
    reported = [reported_usage(r) for r in answered]
    records = UsageRecord.objects.filter(tenant=acme.tenant)
    assert records.count() == len(answered)
    assert sum(r.input_tokens for r in records) == sum(i for i, _ in reported)
    assert sum(r.output_tokens for r in records) == sum(o for _, o in reported)
    # Per turn, the records add up to what the turn itself counted.
    for turn in turns:
        mine = records.filter(turn=turn)
        assert sum(r.input_tokens for r in mine) == turn.input_tokens
        assert sum(r.output_tokens for r in mine) == turn.output_tokens
    # Priced in the worker from the default table: gpt-4o-mini is 0.15 / 0.60 per 1M.
    expected = sum(
        (Decimal(r.input_tokens) * Decimal("0.15") + Decimal(r.output_tokens) * Decimal("0.60"))
        / 1_000_000
        for r in records
    )
    assert abs(sum(r.cost for r in records) - expected) <= Decimal("0.000001") * len(answered)
    totals = usage(acme)["totals"]
    assert totals["input_tokens"] == sum(i for i, _ in reported)
    assert totals["calls"] == len(answered)
