"""Slack: verifying Events API requests, choosing the events we answer, posting replies.

Slack signs every request with the app's signing secret (`v0=` + HMAC-SHA256 of
`v0:<timestamp>:<raw body>`), expects a 2xx within 3 seconds or retries the event (with
`X-Slack-Retry-Num`, up to three times), and takes answers from `chat.postMessage`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from dataclasses import dataclass

import httpx
from django.conf import settings

from agents.models import ChannelBinding, ChannelSessionScope
from beamclaw.errors import DomainError
from beamclaw.outbound import parse_retry_after
from beamclaw.redis import get_redis, key

from . import DeliveryFailed, RequestRefused, bindings

log = logging.getLogger(__name__)

SOURCE = "slack"
# chat.postMessage truncates text over 40,000 characters and advises at most 4,000 per
# message; longer answers go out as several messages in the thread.
PART_CHARS = 3_500
# Slack retries an event for about five minutes (immediately, after 1 min, after 5 min);
# an event id is remembered well past that.
EVENT_ID_TTL_SECONDS = 3600
# `ok: false` errors worth another try; any other is final (bad token, no channel, ...).
TRANSIENT_ERRORS = {"ratelimited", "internal_error", "fatal_error", "service_unavailable"}
# A stand-in key for unknown bindings, so an unknown id costs the same HMAC as a known one.
_NO_SECRET = "beamclaw-unknown-binding"
_MENTION = re.compile(r"<@([A-Z0-9]+)(?:\|[^>]*)?>")


def verify(*, secret: str | None, timestamp: str, signature: str, body: bytes) -> None:
    """Raise RequestRefused unless `signature` is this request's, made with `secret`.

    The caller has checked the timestamp's window; `secret` None (an unknown binding)
    is refused the same way as a wrong signature, so the answer does not tell them apart.
    """
    base = b"v0:" + timestamp.encode() + b":" + body
    digest = hmac.new((secret or _NO_SECRET).encode(), base, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(f"v0={digest}".encode(), signature.encode()) or not secret:
        raise RequestRefused("invalid_signature", "The request signature does not verify.")


@dataclass(frozen=True)
class SlackMessage:
    """A user's message we answer: an app mention, or a direct message to the app."""

    team: str
    channel: str
    ts: str
    thread_ts: str  # "" when not in a thread
    is_direct: bool
    text: str

    @property
    def reply_thread_ts(self) -> str:
        """Where the answer goes: the thread, or a new thread under a channel message.
        A direct message outside a thread is answered in the conversation itself."""
        if self.thread_ts:
            return self.thread_ts
        return "" if self.is_direct else self.ts


def message_to_answer(payload: dict) -> SlackMessage | None:
    """The message of an `event_callback` we should answer, or None.

    Never answered: messages by bots (ours included: answering ourselves would loop),
    subtypes (edits, deletions, joins, bot_message, ...), and plain channel messages
    (a mention arrives as its own `app_mention` event).
    """
    event = payload.get("event")
    if not isinstance(event, dict) or event.get("bot_id") or event.get("subtype"):
        return None
    kind = event.get("type")
    is_direct = kind == "message" and event.get("channel_type") == "im"
    if kind != "app_mention" and not is_direct:
        return None
    text = event.get("text")
    channel, ts = event.get("channel"), event.get("ts")
    if not isinstance(text, str) or not channel or not ts:
        return None
    return SlackMessage(
        team=str(payload.get("team_id") or event.get("team") or ""),
        channel=str(channel),
        ts=str(ts),
        thread_ts=str(event.get("thread_ts") or ""),
        is_direct=is_direct,
        text=_without_app_mentions(text, payload).strip(),
    )


def _without_app_mentions(text: str, payload: dict) -> str:
    """`<@U0APP> what's up` → `what's up`: the app's own mention is noise to the model."""
    ours = {a.get("user_id") for a in payload.get("authorizations") or [] if isinstance(a, dict)}
    ours.discard(None)
    if ours:
        return _MENTION.sub(lambda m: "" if m.group(1) in ours else m.group(0), text)
    return re.sub(r"^\s*<@[A-Z0-9]+(?:\|[^>]*)?>", "", text)  # the leading mention


def session_key_for(binding: ChannelBinding, message: SlackMessage) -> str:
    """`agent:<slug>:slack:<team>:<channel>[:<thread_ts>]`, by the binding's scope."""
    if binding.session_scope == ChannelSessionScope.CHANNEL:
        thread = ""
    elif binding.session_scope == ChannelSessionScope.THREAD:
        thread = message.reply_thread_ts
    else:
        thread = message.thread_ts
    parts = [SOURCE, message.team or "-", message.channel, *([thread] if thread else [])]
    return bindings.session_key(binding.agent.slug, *parts)


def _event_key(binding: ChannelBinding, event_id: str) -> str:
    return key("channels", "slack", binding.tenant_id, binding.pk, "event", event_id)


def handle_event(*, binding: ChannelBinding, payload: dict) -> str:
    """Submit the event's message as a turn whose answer goes back to Slack.

    Returns what happened, for the log. Slack re-sends an event it thinks we missed, so
    an event id is taken once (Redis SET NX); a retry of a taken one is dropped.
    """
    if binding.external_id and payload.get("team_id") != binding.external_id:
        return "other_team"
    message = message_to_answer(payload)
    if message is None or not message.text:
        return "ignored"
    event_id = str(payload.get("event_id") or f"{message.channel}:{message.ts}")
    event_key = _event_key(binding, event_id)
    if not get_redis().set(event_key, "1", nx=True, ex=EVENT_ID_TTL_SECONDS):
        return "duplicate"
    try:
        bindings.submit_with_reply_target(
            binding,
            session_key=session_key_for(binding, message),
            content=message.text,
            target={"channel": message.channel, "thread_ts": message.reply_thread_ts},
        )
    except DomainError as error:  # refused for good (agent gone, session limit, ...)
        log.warning("slack event %s of binding %s refused: %s", event_id, binding.pk, error)
        return f"refused:{error.code}"
    except Exception:
        get_redis().delete(event_key)  # not taken after all: Slack's retry may succeed
        raise
    return "submitted"


def as_plain_text(text: str) -> str:
    """`text` shown exactly as written, with nothing Slack would act on.

    Slack reads `<...>` as control sequences: `<!channel>`, `<!here>`, `<!everyone>` and
    `<!subteam^ID>` ping a whole channel or group, `<@U1>` a person, `<url|label>` hides a
    link behind a label. An agent's answer is untrusted text (a user can ask for any of
    these), so, like Discord's empty `allowed_mentions`, none of it may act: Slack's own
    escaping of its three control characters shows them literally instead. Plain `@channel`
    is only a mention with `link_names`, which we never send.
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def post_message(*, token: str, channel: str, text: str, thread_ts: str = "") -> str:
    """`chat.postMessage` of `text` as plain text (see `as_plain_text`); returns the new
    message's ts. Raises DeliveryFailed."""
    # Escaped after the answer is cut in parts: at most 5x longer, well under Slack's
    # 40,000-character truncation.
    body = {"channel": channel, "text": as_plain_text(text)}
    if thread_ts:
        body["thread_ts"] = thread_ts
    url = f"{settings.SLACK_API_BASE_URL.rstrip('/')}/chat.postMessage"
    try:
        response = httpx.post(
            url,
            json=body,
            headers={"Authorization": f"Bearer {token}"},
            timeout=settings.CHANNEL_HTTP_TIMEOUT,
        )
    except httpx.HTTPError as exc:
        raise DeliveryFailed(f"slack: {exc.__class__.__name__}: {exc}", retryable=True)
    wait = parse_retry_after(response.headers)
    if response.status_code == 429 or response.status_code >= 500:
        raise DeliveryFailed(
            f"slack: HTTP {response.status_code}", retryable=True, retry_after=wait
        )
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        answer = {}
    if response.status_code >= 400 or not answer.get("ok"):
        error = answer.get("error") or f"HTTP {response.status_code}"
        raise DeliveryFailed(
            f"slack: {error}", retryable=error in TRANSIENT_ERRORS, retry_after=wait
        )
    return str(answer.get("ts") or "")
