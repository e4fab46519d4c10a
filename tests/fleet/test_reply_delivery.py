"""Channel replies survive the worker: a turn's answer reaches Slack even if the worker that
finished the turn dies before it sends the reply, and each part of it arrives once."""

from __future__ import annotations

import hashlib
import hmac
import json
import signal
import time

import httpx
import pytest

from agents.channels import bindings, slack
from agents.channels.delivery import split_text
from agents.models import ChannelDelivery, Turn
from tests.support import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

SIGNING_SECRET = "3e1c0a6f9b2d4c8e7a5f1b0d9c8e7a6f"
BOT_TOKEN = "xoxb-supervised-bot"
# Long enough for three Slack messages.
LONG_ANSWER = "\n\n".join(f"Paragraph {i}: " + "lorem ipsum " * 30 for i in range(25))


def post_slack_event(base_url: str, binding_id: int, text: str) -> httpx.Response:
    payload = {
        "type": "event_callback",
        "team_id": "T1",
        "event_id": "EvCrash1",
        "event": {
            "type": "app_mention",
            "user": "U42",
            "text": f"<@UAPP> {text}",
            "channel": "C1",
            "ts": "1700000000.000100",
        },
        "authorizations": [{"team_id": "T1", "user_id": "UAPP", "is_bot": True}],
    }
    body = json.dumps(payload).encode()
    timestamp = str(int(time.time()))
    base = f"v0:{timestamp}:".encode() + body
    signature = "v0=" + hmac.new(SIGNING_SECRET.encode(), base, hashlib.sha256).hexdigest()
    return httpx.post(
        f"{base_url}/hooks/slack/{binding_id}/events",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-Slack-Request-Timestamp": timestamp,
            "X-Slack-Signature": signature,
        },
        timeout=30,
    )


def test_a_reply_whose_worker_died_right_after_the_turn_ended_is_posted_once_per_part(
    stack, ops, model, channel_api_server
):
    channel_api_server.reset()
    model.add_rule(reply=LONG_ANSWER)
    binding = bindings.create_binding(
        tenant=stack.tenant.tenant,
        kind="slack",
        agent="ops",
        external_id="T1",
        signing_secret=SIGNING_SECRET,
        bot_token=BOT_TOKEN,
    )
    stack.start(web=True, beat=True)
    # Worker `a` stops dead right after a turn's final commit, before it sends the reply.
    stack.env["BEAMCLAW_PAUSE_AT"] = "turn.committed"
    stack.start(workers=("a",))
    del stack.env["BEAMCLAW_PAUSE_AT"]

    response = post_slack_event(stack.base_url, binding.pk, "tell me a long story")
    assert response.status_code == 200, response.text

    turn = wait_until(
        lambda: Turn.objects.filter(tenant=stack.tenant.tenant, status="succeeded").first(),
        timeout=60,
        message="the turn to succeed",
    )
    worker = stack.workers["a"]
    wait_until(
        lambda: "paused at turn.committed" in worker.log(),
        timeout=30,
        message="worker a to stop after the turn's commit",
    )
    worker.kill(signal.SIGKILL)
    worker.proc.wait(10)
    assert channel_api_server.requests == [], "the reply went out before the kill"

    stack.start(workers=("b",))
    delivery = wait_until(
        lambda: ChannelDelivery.objects.filter(turn=turn, delivered_at__isnull=False).first(),
        timeout=60,
        message="the reply to be posted after the kill",
    )

    parts = split_text(LONG_ANSWER, slack.PART_CHARS)
    assert len(parts) == 3
    posts = [r for r in channel_api_server.requests if r.path == "/chat.postMessage"]
    assert [post.json["text"] for post in posts] == parts
    assert {post.json["channel"] for post in posts} == {"C1"}
    assert (delivery.parts_sent, delivery.attempts) == (3, 1)
