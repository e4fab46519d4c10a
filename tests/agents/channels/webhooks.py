"""Signed Slack and Discord webhook calls, and what the fake chat API saw, for the channel tests."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

from django.test import Client
from nacl.signing import SigningKey

from agents.models import ChannelDelivery, Turn
from testing.fake_chat import Request
from tests.support import wait_until

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


BOT_TOKEN = "xoxb-test-bot-token"
DISCORD_BOT_TOKEN = "discord-bot-token"


def is_slack_post(request: Request) -> bool:
    return request.api == "slack" and request.path == "/chat.postMessage"


def delivered(turn: Turn) -> ChannelDelivery:
    return wait_until(
        lambda: ChannelDelivery.objects.filter(turn=turn, delivered_at__isnull=False).first(),
        message=f"the answer of turn {turn.pk} to be delivered",
    )


def slack_event(
    text: str = "<@UAPP> what's up?",
    *,
    event_id: str = "Ev1",
    ts: str = "1700000000.000100",
    kind: str = "app_mention",
    **fields,
) -> dict:
    event = {"type": kind, "user": "U42", "text": text, "channel": "C1", "ts": ts, **fields}
    return {
        "type": "event_callback",
        "team_id": "T1",
        "api_app_id": "A1",
        "event": event,
        "event_id": event_id,
        "event_time": int(time.time()),
        "authorizations": [{"team_id": "T1", "user_id": "UAPP", "is_bot": True}],
    }


def slack_signature(body: bytes, timestamp: str, secret: str = SIGNING_SECRET) -> str:
    base = f"v0:{timestamp}:".encode() + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def post_slack(binding_id, payload: dict, *, secret: str = SIGNING_SECRET, **headers):
    body = json.dumps(payload).encode()
    timestamp = str(int(time.time()))
    signed = {
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": slack_signature(body, timestamp, secret),
    }
    return Client().post(
        f"/hooks/slack/{binding_id}/events",
        data=body,
        content_type="application/json",
        headers={**signed, **headers},
    )


def post_discord(binding_id, payload: dict, key: SigningKey, *, timestamp: str | None = None):
    body = json.dumps(payload).encode()
    timestamp = timestamp or str(int(time.time()))
    signature = key.sign(timestamp.encode() + body).signature.hex()
    return Client().post(
        f"/hooks/discord/{binding_id}/interactions",
        data=body,
        content_type="application/json",
        headers={"X-Signature-Ed25519": signature, "X-Signature-Timestamp": timestamp},
    )


def slash_command(text: str = "hello there", *, guild: str | None = "G1") -> dict:
    payload = {
        "type": 2,
        "id": "I1",
        "application_id": "A1",
        "token": "interaction-token-1",
        "channel_id": "C9",
        "data": {
            "id": "CMD1",
            "name": "ask",
            "type": 1,
            "options": [{"name": "prompt", "type": 3, "value": text}],
        },
    }
    if guild:
        payload.update(guild_id=guild, member={"user": {"id": "U1"}})
    else:
        payload["user"] = {"id": "U1"}
    return payload
