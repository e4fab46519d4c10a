"""What a tenant sees when a turn fails: a stable code and a short message of ours, never
the text of a remote server or of an internal exception."""

import re
import time

import pytest

from agents.models import Agent
from tenants import limits
from tenants.models import UsageRecord
from tests.support import make_agent, send, wait_for_turn

pytestmark = pytest.mark.django_db(transaction=True)

KEY = "agent:ops:main"


@pytest.mark.usefixtures("worker")
def test_a_provider_error_shows_the_code_and_our_message_not_the_remote_body(acme, agent, model):
    model.add_rule(status=400, reply="upstream said: db-7.corp.internal rejected sk-live-123")

    turn = wait_for_turn(send(acme, KEY, "hello")["turn"]["id"])

    error = acme.client.get(f"/api/v1/turns/{turn.pk}").json()["error"]
    assert error == {
        "code": "provider_bad_request",
        "message": "openai refused the request (HTTP 400).",
    }


@pytest.mark.usefixtures("worker")
def test_the_turn_deadline_stops_a_model_call_that_only_sends_keep_alives(acme, model):
    make_agent(acme.tenant, model, turn_timeout_seconds=2)
    # Before the deadline was checked inside the call, this held the worker thread for
    # the whole 25 s, once per retry.
    model.add_rule(keepalive_every=0.3, keepalive_for=25)
    started = time.monotonic()

    turn = wait_for_turn(send(acme, KEY, "hello")["turn"]["id"], timeout=20)

    assert (turn.status, turn.error_code) == ("failed", "turn_timeout")
    assert time.monotonic() - started < 15
    assert model.call_count == 1


@pytest.mark.usefixtures("worker")
def test_text_streamed_before_the_turn_deadline_cut_the_call_is_billed(acme, model):
    make_agent(acme.tenant, model, turn_timeout_seconds=2)
    # A long answer, a word every 0.1 s: the deadline cuts it after some words went out.
    model.add_rule(reply="word " * 1000, stream_chunk_delay=0.1)

    turn = wait_for_turn(send(acme, KEY, "hello")["turn"]["id"], timeout=30)

    assert (turn.status, turn.error_code) == ("failed", "turn_timeout")
    record = UsageRecord.objects.get(tenant=acme.tenant, turn_id=turn.pk)
    assert record.output_tokens > 0 and record.input_tokens > 0
    assert (turn.input_tokens, turn.output_tokens) == (record.input_tokens, record.output_tokens)
    assert limits.current_usage(acme.tenant)["tokens_today"] == (
        record.input_tokens + record.output_tokens
    )


@pytest.mark.usefixtures("worker")
def test_a_call_that_fails_before_streaming_any_text_is_not_billed(acme, agent, model):
    model.add_rule(status=400)

    turn = wait_for_turn(send(acme, KEY, "hello")["turn"]["id"])

    assert (turn.status, turn.error_code) == ("failed", "provider_bad_request")
    assert not UsageRecord.objects.filter(tenant=acme.tenant).exists()
    assert limits.current_usage(acme.tenant)["tokens_today"] == 0


def test_a_crashed_turn_shows_a_reference_the_worker_log_carries_not_the_exception(
    acme, agent, worker
):
    # An agent row an admin edit left unusable: the loop fails on it with a TypeError.
    Agent.objects.filter(pk=agent.pk).update(tools=7)

    turn = wait_for_turn(send(acme, KEY, "hello")["turn"]["id"])

    assert (turn.status, turn.error_code) == ("failed", "internal_error")
    match = re.fullmatch(
        r"The turn failed on an internal error \(reference ([0-9a-f]{12})\)\.", turn.error_message
    )
    assert match, turn.error_message
    log = worker.log()
    line = next(line for line in log.splitlines() if f"reference {match[1]}" in line)
    assert f"turn {turn.pk} crashed" in line
    traceback = log[log.index(line) :]
    assert "Traceback" in traceback and "TypeError" in traceback
