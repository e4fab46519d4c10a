"""Storms of 500s and 429s from the model: retried within the cap, then a clear failure."""

from __future__ import annotations

from collections import Counter
from itertools import pairwise

import pytest

from agents.models import ACTIVE_STATUSES, Turn
from tests.support import conversation

from .conftest import wait_for_turns

pytestmark = pytest.mark.django_db(transaction=True)

MAX_RETRIES = 3  # PROVIDER_MAX_RETRIES in the stack's environment


def test_provider_error_storms_end_in_a_clear_outcome_and_never_block_the_session(
    stack, dedicated, ops, model
):
    model.add_rule(match=r"flaky", status=500, times=3)  # then it answers
    model.add_rule(match=r"throttled", status=429, headers={"Retry-After": "1"})
    model.add_rule(match=r"outage", status=503)
    stack.start(web=True, workers=("a",))
    key = "agent:ops:main"

    # All at once: they run in this order in the session, each after the previous ended.
    contents = ["flaky", "throttled", "outage", "calm"]
    ids = [stack.send(key, content)["turn"]["id"] for content in contents]
    turns = wait_for_turns(ids, timeout=40)
    flaky, throttled, outage, calm = (turns[i] for i in ids)

    calls = Counter(r["messages"][-1]["content"] for r in model.requests)
    # Three 500s, then an answer: the user just gets the answer.
    assert flaky.status == "succeeded"
    assert calls["flaky"] == 4
    # 429 beyond the retry cap: a clear code, Retry-After honoured between attempts.
    assert (throttled.status, throttled.error_code) == ("failed", "provider_rate_limited")
    assert calls["throttled"] == 1 + MAX_RETRIES
    starts = [
        r["started_at"] for r in model.requests if r["messages"][-1]["content"] == "throttled"
    ]
    assert all(b - a >= 0.9 for a, b in pairwise(starts)), starts
    # 5xx beyond the cap: the provider is unavailable.
    assert (outage.status, outage.error_code) == ("failed", "provider_unavailable")
    assert calls["outage"] == 1 + MAX_RETRIES
    # The failures did not block the session: its next turn is answered.
    assert calm.status == "succeeded"
    assert calls["calm"] == 1
    assert [(role, content) for _, role, content in conversation(key)] == [
        ("user", "flaky"),
        ("assistant", "echo: flaky"),
        ("user", "throttled"),
        ("user", "outage"),
        ("user", "calm"),
        ("assistant", "echo: calm"),
    ]
    # What the client reads for each turn.
    for turn, code in [(throttled, "provider_rate_limited"), (outage, "provider_unavailable")]:
        body = stack.get_turn(turn.pk)
        assert body["status"] == "failed"
        assert body["error"]["code"] == code
        assert body["error"]["message"]
    assert stack.get_turn(calm.pk)["reply"] == "echo: calm"
    assert not Turn.objects.filter(tenant=dedicated.tenant, status__in=ACTIVE_STATUSES).exists()
