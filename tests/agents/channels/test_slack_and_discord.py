"""Slack and Discord webhooks in, answers out: signatures, retries, delivery, splitting.

The webhooks are called in-process with Django's test client; the turn runs on the real
worker, which posts the answer to the fake Slack/Discord API (its URLs are in the worker's
environment, see `platform_env`).
"""

from __future__ import annotations

import json
import time

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from nacl.signing import SigningKey

from agents.channels import bindings, delivery
from agents.models import ChannelBinding, ChannelDelivery, Turn
from tests.agents.channels.webhooks import (
    BOT_TOKEN,
    SIGNING_SECRET,
    delivered,
    is_slack_post,
    post_discord,
    post_slack,
    slack_event,
    slack_signature,
    slash_command,
)
from tests.support import wait_for_turn, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("worker")]


# --- Slack ------------------------------------------------------------------------------


def test_a_signed_mention_is_answered_in_its_thread_with_the_bot_token(slack_binding, channel_api):
    started = time.monotonic()
    response = post_slack(slack_binding.pk, slack_event())

    assert response.status_code == 200
    assert time.monotonic() - started < 3  # Slack retries an event it has not heard back on
    turn = Turn.objects.get()
    assert turn.source == "slack"
    assert turn.session.key == "agent:ops:slack:T1:C1"
    [post] = channel_api.wait_for(is_slack_post)
    assert post.headers["authorization"] == f"Bearer {BOT_TOKEN}"
    assert post.json == {
        "channel": "C1",
        "thread_ts": "1700000000.000100",
        "text": "echo: what's up?",  # the app's own mention is not sent to the model
    }
    assert delivered(turn).attempts == 1


def test_a_message_in_a_thread_has_the_threads_session_and_is_answered_there(
    slack_binding, channel_api
):
    event = slack_event("<@UAPP> and now?", ts="1700000009.000200", thread_ts="1700000000.1")

    assert post_slack(slack_binding.pk, event).status_code == 200

    turn = Turn.objects.get()
    assert turn.session.key == "agent:ops:slack:T1:C1:1700000000.1"
    delivered(turn)
    [post] = channel_api.wait_for(is_slack_post)
    assert post.json["thread_ts"] == "1700000000.1"


def test_a_direct_message_is_answered_in_the_conversation(slack_binding, channel_api):
    event = slack_event("hello", kind="message", channel_type="im", channel="D7")

    assert post_slack(slack_binding.pk, event).status_code == 200

    turn = Turn.objects.get()
    assert turn.session.key == "agent:ops:slack:T1:D7"
    delivered(turn)
    [post] = channel_api.wait_for(is_slack_post)
    assert post.json == {"channel": "D7", "text": "echo: hello"}


def test_url_verification_echoes_the_challenge(slack_binding):
    payload = {"type": "url_verification", "token": "x", "challenge": "3eZbrw1aBm2rZgRNFdxV"}

    response = post_slack(slack_binding.pk, payload)

    assert response.status_code == 200
    assert response.json() == {"challenge": "3eZbrw1aBm2rZgRNFdxV"}


def _unsigned(headers: dict) -> dict:
    return {k: v for k, v in headers.items() if k != "X-Slack-Signature"}


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("wrong secret", "invalid_signature"),
        ("tampered body", "invalid_signature"),
        ("stale timestamp", "stale_timestamp"),
        ("future timestamp", "stale_timestamp"),
        ("no signature", "missing_signature"),
        ("no timestamp", "missing_signature"),
        ("unknown binding", "invalid_signature"),
    ],
)
def test_an_unverified_slack_request_is_refused_and_starts_nothing(
    slack_binding, channel_api, case, code
):
    body = json.dumps(slack_event()).encode()
    timestamp = str(int(time.time()))
    headers = {
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": slack_signature(body, timestamp),
    }
    binding_id = slack_binding.pk
    if case == "wrong secret":
        headers["X-Slack-Signature"] = slack_signature(body, timestamp, "not-the-secret")
    elif case == "tampered body":
        body = body.replace(b"what's up?", b"rm -rf /")
    elif case in ("stale timestamp", "future timestamp"):
        skew = -301 if case == "stale timestamp" else 301
        timestamp = str(int(time.time()) + skew)
        headers = {
            "X-Slack-Request-Timestamp": timestamp,
            "X-Slack-Signature": slack_signature(body, timestamp),
        }
    elif case == "no signature":
        headers = _unsigned(headers)
    elif case == "no timestamp":
        del headers["X-Slack-Request-Timestamp"]
    elif case == "unknown binding":
        binding_id = slack_binding.pk + 1000

    response = Client().post(
        f"/hooks/slack/{binding_id}/events",
        data=body,
        content_type="application/json",
        headers=headers,
    )

    assert response.status_code == 401
    assert response.json()["error"]["code"] == code
    assert set(response.json()["error"]) == {"code", "message", "details"}
    assert not Turn.objects.exists()
    assert not channel_api.requests


@pytest.mark.parametrize(
    "path",
    [
        "/hooks/slack/latest/events",
        "/hooks/slack/%C2%B2/events",  # "²".isdigit() is true, int("²") fails
        "/hooks/slack/99999999999999999999999/events",
        "/hooks/discord/%C2%B2/interactions",
    ],
)
def test_a_webhook_address_whose_id_is_not_a_number_is_a_json_404(slack_binding, path):
    response = Client(raise_request_exception=False).post(
        path, data=b"{}", content_type="application/json"
    )

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert not Turn.objects.exists()


@pytest.mark.parametrize("hook", ["slack", "discord"])
def test_a_webhook_body_over_the_upload_limit_is_413_before_anything_else(
    request, channel_api, settings, hook
):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1_000
    binding = request.getfixturevalue(f"{hook}_binding")
    path = f"/hooks/{hook}/{binding.pk}/" + ("events" if hook == "slack" else "interactions")
    body = json.dumps(slack_event(text="x" * 2_000)).encode()

    response = Client(raise_request_exception=False).post(
        path, data=body, content_type="application/json"
    )

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert not Turn.objects.exists()
    assert not channel_api.requests


def test_a_signed_body_nested_too_deep_to_parse_is_400(slack_binding, channel_api):
    body = b"[" * 100_000 + b"]" * 100_000
    timestamp = str(int(time.time()))

    response = Client(raise_request_exception=False).post(
        f"/hooks/slack/{slack_binding.pk}/events",
        data=body,
        content_type="application/json",
        headers={
            "X-Slack-Request-Timestamp": timestamp,
            "X-Slack-Signature": slack_signature(body, timestamp),
        },
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_request"
    assert not Turn.objects.exists()


def test_a_retried_event_runs_once(slack_binding, channel_api):
    first = post_slack(slack_binding.pk, slack_event(event_id="EvSame"))
    retry = post_slack(
        slack_binding.pk,
        slack_event(event_id="EvSame"),
        **{"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"},
    )

    assert first.status_code == retry.status_code == 200
    turn = Turn.objects.get()
    delivered(turn)
    assert len([r for r in channel_api.requests if is_slack_post(r)]) == 1
    # Another event is a new turn, though.
    post_slack(slack_binding.pk, slack_event(event_id="EvOther"))
    assert Turn.objects.count() == 2
    delivered(Turn.objects.latest("id"))


@pytest.mark.parametrize(
    "event",
    [
        {"bot_id": "B1"},  # another bot, or ourselves
        {"subtype": "message_changed"},
        {"kind": "message", "channel_type": "channel"},  # mentions come as app_mention
        {"kind": "message", "channel_type": "im", "subtype": "bot_message"},
        {"kind": "reaction_added"},
    ],
)
def test_bots_edits_and_other_events_are_acknowledged_but_not_answered(
    slack_binding, channel_api, event
):
    assert post_slack(slack_binding.pk, slack_event(**event)).status_code == 200

    assert not Turn.objects.exists()


def test_an_event_of_another_workspace_is_ignored(slack_binding):
    payload = {**slack_event(), "team_id": "T-OTHER"}

    assert post_slack(slack_binding.pk, payload).status_code == 200

    assert not Turn.objects.exists()


LONG_ANSWER = "\n\n".join(f"Paragraph {i}. " + " ".join(["word"] * 150) for i in range(12))


def test_a_long_answer_is_split_into_several_messages_in_the_thread(
    slack_binding, channel_api, model
):
    model.add_rule(match="essay", reply=LONG_ANSWER)

    post_slack(slack_binding.pk, slack_event("<@UAPP> write an essay"))

    delivered(Turn.objects.get())
    posts = [r.json for r in channel_api.requests if is_slack_post(r)]
    assert len(posts) >= 3
    assert all(len(p["text"]) <= 4000 for p in posts)
    assert {p["thread_ts"] for p in posts} == {"1700000000.000100"}
    assert "\n\n".join(p["text"] for p in posts) == LONG_ANSWER.strip()
    assert all(p["text"].startswith("Paragraph") for p in posts)  # cut between paragraphs


def test_a_rate_limited_reply_is_retried_and_nothing_is_posted_twice(
    slack_binding, channel_api, model
):
    model.add_rule(match="essay", reply=LONG_ANSWER)
    # The second piece is refused twice: a 429 with Retry-After, then a 503.
    channel_api.fail(path=r"chat\.postMessage", status=429, headers={"Retry-After": "1"}, after=1)
    channel_api.fail(path=r"chat\.postMessage", status=503, after=1)

    post_slack(slack_binding.pk, slack_event("<@UAPP> write an essay"))

    turn = Turn.objects.get()
    record = delivered(turn)
    calls = [r for r in channel_api.requests if is_slack_post(r)]
    assert [r.status for r in calls[:3]] == [200, 429, 503]
    accepted = [r.json["text"] for r in calls if r.status == 200]
    assert len(accepted) == len(set(accepted)) == record.parts_sent
    assert "\n\n".join(accepted) == LONG_ANSWER.strip()
    assert record.attempts == 3
    # A late duplicate trigger finds it delivered and posts nothing.
    assert delivery.deliver_reply(tenant_slug="acme", turn_id=turn.pk).status == "skipped"
    assert len(channel_api.requests) == len(calls)


def test_a_refused_reply_is_not_retried(slack_binding, channel_api):
    channel_api.fail(
        path=r"chat\.postMessage", status=200, body={"ok": False, "error": "channel_not_found"}
    )

    post_slack(slack_binding.pk, slack_event())

    turn = wait_for_turn(Turn.objects.get().pk)
    record = wait_until(
        lambda: ChannelDelivery.objects.filter(turn=turn).exclude(last_error="").first()
    )
    assert record.last_error == "slack: channel_not_found"
    assert record.delivered_at is None
    time.sleep(1)  # a retry would come within 0.2 s (the backoff base in the worker env)
    assert len(channel_api.requests) == 1


def test_a_failed_turn_gets_a_short_note(slack_binding, channel_api, model):
    model.add_rule(match="boom", status=400, reply="bad request from the model")

    post_slack(slack_binding.pk, slack_event("<@UAPP> boom"))

    turn = wait_for_turn(Turn.objects.get().pk)
    assert turn.status == "failed"
    delivered(turn)
    [post] = channel_api.wait_for(is_slack_post)
    assert post.json["text"] == f"Sorry, I could not answer this time ({turn.error_code})."
    assert "bad request" not in post.json["text"]


HOSTILE_ANSWER = (
    "<!channel> <!here|here> <!everyone> <!subteam^S0614TZR7|@oncall> <@U42> "
    "<https://evil.example|your bank> fish & chips"
)


def test_mentions_and_links_in_an_answer_are_posted_as_plain_text(
    slack_binding, channel_api, model
):
    model.add_rule(match="announce", reply=HOSTILE_ANSWER)

    post_slack(slack_binding.pk, slack_event("<@UAPP> announce it"))

    delivered(Turn.objects.get())
    [post] = channel_api.wait_for(is_slack_post)
    # Slack's escaping: shown as written, and nothing in it pings anyone.
    assert post.json["text"] == (
        "&lt;!channel&gt; &lt;!here|here&gt; &lt;!everyone&gt; "
        "&lt;!subteam^S0614TZR7|@oncall&gt; &lt;@U42&gt; "
        "&lt;https://evil.example|your bank&gt; fish &amp; chips"
    )


def test_secrets_are_encrypted_at_rest(slack_binding):
    row = type(slack_binding).objects.values().get(pk=slack_binding.pk)

    assert SIGNING_SECRET not in json.dumps(row, default=str)
    assert BOT_TOKEN not in json.dumps(row, default=str)
    assert bindings.signing_secret(slack_binding) == SIGNING_SECRET
    assert bindings.bot_token(slack_binding) == BOT_TOKEN


# --- Discord ----------------------------------------------------------------------------


def test_ping_gets_pong(discord_binding, discord_key):
    response = post_discord(discord_binding.pk, {"type": 1, "application_id": "A1"}, discord_key)

    assert response.status_code == 200
    assert response.json() == {"type": 1}


@pytest.mark.parametrize("case", ["other key", "no headers", "stale", "unknown binding"])
def test_an_unverified_interaction_is_refused(discord_binding, discord_key, channel_api, case):
    key, binding_id, timestamp = discord_key, discord_binding.pk, None
    if case == "other key":
        key = SigningKey.generate()
    elif case == "stale":
        timestamp = str(int(time.time()) - 600)
    elif case == "unknown binding":
        binding_id += 1000

    if case == "no headers":
        response = Client().post(
            f"/hooks/discord/{binding_id}/interactions",
            data=json.dumps({"type": 1}),
            content_type="application/json",
        )
    else:
        response = post_discord(binding_id, slash_command(), key, timestamp=timestamp)

    assert response.status_code == 401
    assert response.json()["error"]["code"] in {
        "invalid_signature",
        "missing_signature",
        "stale_timestamp",
    }
    assert not Turn.objects.exists()


def test_a_slash_command_is_deferred_then_its_answer_is_edited_in(
    discord_binding, discord_key, channel_api
):
    started = time.monotonic()
    response = post_discord(discord_binding.pk, slash_command(), discord_key)

    assert response.status_code == 200
    assert response.json() == {"type": 5}
    assert time.monotonic() - started < 3
    turn = Turn.objects.get()
    assert (turn.source, turn.session.key) == ("discord", "agent:ops:discord:G1:C9")
    [edit] = channel_api.wait_for(lambda r: r.api == "discord")
    assert edit.method == "PATCH"
    assert edit.path == "/webhooks/A1/interaction-token-1/messages/@original"
    assert edit.json == {"content": "echo: hello there", "allowed_mentions": {"parse": []}}
    record = delivered(turn)
    assert "interaction-token-1" not in json.dumps(record.target)  # encrypted at rest


def post_signed_discord(binding_id, body: bytes, timestamp: str, signature: str):
    return Client().post(
        f"/hooks/discord/{binding_id}/interactions",
        data=body,
        content_type="application/json",
        headers={"X-Signature-Ed25519": signature, "X-Signature-Timestamp": timestamp},
    )


def test_a_replayed_interaction_starts_nothing(discord_binding, discord_key, channel_api):
    body = json.dumps(slash_command("deploy to production")).encode()
    timestamp = str(int(time.time()))
    signature = discord_key.sign(timestamp.encode() + body).signature.hex()

    first = post_signed_discord(discord_binding.pk, body, timestamp, signature)
    turn = wait_for_turn(Turn.objects.get().pk)
    delivered(turn)
    replay = post_signed_discord(discord_binding.pk, body, timestamp, signature)
    # The same interaction id signed again, as a captured request can be: refused too.
    resigned = post_discord(discord_binding.pk, slash_command("deploy again"), discord_key)

    assert first.json() == {"type": 5}
    for response in (replay, resigned):
        assert response.status_code == 200
        assert response.json()["type"] == 4  # answered at once, to the sender only
        assert response.json()["data"]["content"] == "This command was already received."
    assert list(Turn.objects.values_list("pk", flat=True)) == [turn.pk]
    assert len([r for r in channel_api.requests if r.api == "discord"]) == 1
    # A new interaction is a new turn.
    other = post_discord(discord_binding.pk, {**slash_command(), "id": "I2"}, discord_key)
    assert other.json() == {"type": 5}
    assert Turn.objects.count() == 2
    delivered(Turn.objects.latest("id"))


def test_a_long_discord_answer_continues_in_follow_ups(
    discord_binding, discord_key, channel_api, model
):
    model.add_rule(match="essay", reply=LONG_ANSWER)

    post_discord(discord_binding.pk, slash_command("an essay, please", guild=None), discord_key)

    turn = Turn.objects.get()
    assert turn.session.key == "agent:ops:discord:dm:C9"
    delivered(turn)
    calls = [r for r in channel_api.requests if r.api == "discord"]
    assert calls[0].method == "PATCH"
    assert {(r.method, r.path) for r in calls[1:]} == {("POST", "/webhooks/A1/interaction-token-1")}
    assert all(len(r.json["content"]) <= 2000 for r in calls)
    assert "\n\n".join(r.json["content"] for r in calls) == LONG_ANSWER.strip()


def test_a_command_without_text_is_answered_at_once_and_starts_nothing(
    discord_binding, discord_key
):
    payload = slash_command()
    payload["data"]["options"] = []

    response = post_discord(discord_binding.pk, payload, discord_key)

    assert response.json()["type"] == 4
    assert response.json()["data"]["flags"] == 64  # only the user sees it
    assert not Turn.objects.exists()


# --- Pieces -----------------------------------------------------------------------------


def test_split_text_cuts_at_paragraphs_then_lines_then_spaces():
    assert delivery.split_text("short", 10) == ["short"]
    assert delivery.split_text("aaaa\n\nbbbb\ncc", 10) == ["aaaa", "bbbb\ncc"]
    assert delivery.split_text("aaaaa bbbbb ccccc", 12) == ["aaaaa bbbbb", "ccccc"]
    assert delivery.split_text("x" * 25, 10) == ["x" * 10, "x" * 10, "x" * 5]


def test_a_huge_reply_becomes_at_most_the_part_cap_with_a_note_and_a_short_one_is_whole(
    settings,
):
    settings.CHANNEL_REPLY_MAX_PARTS = 3
    answer = "word " * 8_000_000  # 40 MB: split whole, it would hold a worker for minutes

    parts = delivery.capped_parts(answer, 2000, turn_id=42)

    assert len(parts) == 3
    assert all(0 < len(part) <= 2000 for part in parts)
    assert parts[-1].endswith("[Cut here: the whole answer is turn 42 in the API.]")
    assert delivery.capped_parts("word " * 1000, 2000, turn_id=42) == delivery.split_text(
        "word " * 1000, 2000
    )


def test_session_names_are_made_safe_and_short():
    key = bindings.session_key("ops", "slack", "T 1", "C/1:2", "x" * 300)

    from agents.services import parse_session_key

    assert parse_session_key(key)[0] == "ops"
    assert key.startswith("agent:ops:slack:T-1:C-1-2:xxx")
    assert bindings.session_key("ops", "a" * 300) != bindings.session_key("ops", "a" * 301)


def test_the_admin_takes_secrets_write_only(admin_client, acme, agent):
    form = {
        "tenant": acme.tenant.pk,
        "kind": "slack",
        "name": "Support workspace",
        "agent": agent.pk,
        "external_id": "T1",
        "session_scope": "thread",
        "public_key": "",
        "signing_secret": SIGNING_SECRET,
        "bot_token": BOT_TOKEN,
    }

    response = admin_client.post("/admin/agents/channelbinding/add/", form)

    assert response.status_code == 302, response.content[:2000]
    binding = ChannelBinding.objects.get()
    assert bindings.signing_secret(binding) == SIGNING_SECRET
    page = admin_client.get(f"/admin/agents/channelbinding/{binding.pk}/change/").content
    assert SIGNING_SECRET.encode() not in page and BOT_TOKEN.encode() not in page
    assert f"/hooks/slack/{binding.pk}/events".encode() in page
    # Saving again with the secret fields blank keeps the stored secrets.
    form.update(signing_secret="", bot_token="", name="Renamed")
    admin_client.post(f"/admin/agents/channelbinding/{binding.pk}/change/", form)
    binding.refresh_from_db()
    assert binding.name == "Renamed"
    assert bindings.bot_token(binding) == BOT_TOKEN


def test_the_admin_refuses_a_slack_binding_without_a_signing_secret(admin_client, acme, agent):
    response = admin_client.post(
        "/admin/agents/channelbinding/add/",
        {"tenant": acme.tenant.pk, "kind": "slack", "agent": agent.pk, "session_scope": "thread"},
    )

    assert response.status_code == 200  # the form again, with the error
    assert b"signing secret" in response.content
    assert not ChannelBinding.objects.exists()


def test_the_command_creates_a_binding_with_secrets_from_the_environment(
    acme, agent, discord_key, monkeypatch, capsys
):
    monkeypatch.setenv("DISCORD_BOT_TOKEN", "from-the-env")
    public_key = discord_key.verify_key.encode().hex()

    call_command(
        "create_channel_binding",
        "discord",
        "--tenant=acme",
        "--agent=ops",
        "--external-id=A1",
        f"--public-key={public_key}",
    )

    binding = ChannelBinding.objects.get()
    assert capsys.readouterr().out.strip() == (
        f"binding {binding.pk}: /hooks/discord/{binding.pk}/interactions"
    )
    assert bindings.bot_token(binding) == "from-the-env"
    with pytest.raises(CommandError, match="public key"):
        call_command(
            "create_channel_binding", "discord", "--tenant=acme", "--agent=ops", "--public-key=zz"
        )
