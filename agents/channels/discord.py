"""Discord: verifying interaction requests, taking slash commands, editing the answer in.

Discord signs each interaction with Ed25519 (`X-Signature-Ed25519` over timestamp + raw
body, checked with the application's public key), needs an answer within 3 seconds, and
lets the interaction token edit the response for 15 minutes. So a command is answered
at once with a deferred response ("thinking..."), and the agent's answer replaces it.
With no interaction to answer (a cron job's run), the bot posts in a channel instead.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass

import httpx
from django.conf import settings
from nacl.exceptions import BadSignatureError, CryptoError
from nacl.signing import VerifyKey

from agents.models import ChannelBinding
from beamclaw.crypto import encrypt
from beamclaw.errors import DomainError
from beamclaw.outbound import parse_retry_after
from beamclaw.redis import get_redis, key

from . import DeliveryFailed, RequestRefused, bindings

log = logging.getLogger(__name__)

SOURCE = "discord"
# Interaction types and response types (Discord's numbering).
PING, APPLICATION_COMMAND = 1, 2
PONG, CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE = 1, 4, 5
EPHEMERAL = 1 << 6
STRING_OPTION = 3
# A message's content is at most 2,000 characters; the rest goes out as follow-ups.
PART_CHARS = 2_000
# A stand-in key for unknown bindings, so an unknown id costs the same check as a known one.
_NO_KEY = VerifyKey(bytes(32))
# The agent's text must not ping @everyone, roles or users.
NO_MENTIONS = {"parse": []}


def verify(*, public_key: str | None, timestamp: str, signature: str, body: bytes) -> None:
    """Raise RequestRefused unless `signature` signs timestamp + body for `public_key`.

    The caller has checked the timestamp's window; `public_key` None (an unknown binding)
    is refused like a bad signature.
    """
    try:
        key = VerifyKey(bytes.fromhex(public_key)) if public_key else _NO_KEY
        key.verify(timestamp.encode() + body, bytes.fromhex(signature))
    except (ValueError, TypeError, BadSignatureError, CryptoError):
        raise RequestRefused("invalid_signature", "The request signature does not verify.")
    if not public_key:
        raise RequestRefused("invalid_signature", "The request signature does not verify.")


@dataclass(frozen=True)
class SlashCommand:
    application_id: str
    token: str
    guild_id: str  # "" in a direct message
    channel_id: str
    name: str
    text: str


def read_command(payload: dict) -> SlashCommand:
    data = payload.get("data") if isinstance(payload.get("data"), dict) else {}
    channel = payload.get("channel") if isinstance(payload.get("channel"), dict) else {}
    return SlashCommand(
        application_id=str(payload.get("application_id") or ""),
        token=str(payload.get("token") or ""),
        guild_id=str(payload.get("guild_id") or ""),
        channel_id=str(payload.get("channel_id") or channel.get("id") or ""),
        name=str(data.get("name") or ""),
        text=(command_text(data.get("options")) or "").strip(),
    )


def command_text(options: object) -> str | None:
    """The first string option's value, looking inside subcommands (e.g. `/ask prompt:`)."""
    if not isinstance(options, list):
        return None
    for option in options:
        if not isinstance(option, dict):
            continue
        if option.get("type") == STRING_OPTION and isinstance(option.get("value"), str):
            return option["value"]
        if (text := command_text(option.get("options"))) is not None:
            return text
    return None


def session_key_for(binding: ChannelBinding, command: SlashCommand) -> str:
    """`agent:<slug>:discord:<guild or dm>:<channel>` (a thread is a channel in Discord)."""
    parts = [SOURCE, command.guild_id or "dm", command.channel_id or "-"]
    return bindings.session_key(binding.agent.slug, *parts)


def _interaction_key(binding: ChannelBinding, payload: dict) -> str:
    # Discord gives every interaction an id; a body without one is keyed by its content.
    interaction_id = str(payload.get("id") or "")
    if not interaction_id:
        canonical = json.dumps(payload, sort_keys=True).encode()
        interaction_id = "sha256:" + hashlib.sha256(canonical).hexdigest()
    return key("channels", "discord", binding.tenant_id, binding.pk, "interaction", interaction_id)


def _take_interaction(binding: ChannelBinding, payload: dict) -> str | None:
    """The interaction's Redis key if this is its first arrival, else None.

    A captured request stays signed and passes the timestamp check for
    CHANNEL_SIGNATURE_MAX_AGE_SECONDS either side of its time, so its id is remembered
    past that whole window: a replay inside it starts nothing.
    """
    interaction_key = _interaction_key(binding, payload)
    ttl = 2 * settings.CHANNEL_SIGNATURE_MAX_AGE_SECONDS + 60
    if not get_redis().set(interaction_key, "1", nx=True, ex=ttl):
        return None
    return interaction_key


def _say(text: str) -> dict:
    """An immediate answer only the user sees."""
    return {
        "type": CHANNEL_MESSAGE,
        "data": {"content": text, "flags": EPHEMERAL, "allowed_mentions": NO_MENTIONS},
    }


def handle_command(*, binding: ChannelBinding, payload: dict) -> dict:
    """Submit the command's text as a turn; returns the interaction response to send."""
    command = read_command(payload)
    if binding.external_id and command.application_id != binding.external_id:
        return _say("This command is not for this application.")
    if not command.text or not command.token:
        return _say("Tell me what to do: give the command some text.")
    application_id = binding.external_id or command.application_id
    interaction_key = _take_interaction(binding, payload)
    if interaction_key is None:
        log.warning("discord interaction %s of binding %s replayed", payload.get("id"), binding.pk)
        return _say("This command was already received.")
    try:
        submission = bindings.submit_with_reply_target(
            binding,
            session_key=session_key_for(binding, command),
            content=command.text,
            target={
                "application_id": application_id,
                "token_encrypted": encrypt(command.token),
                "channel_id": command.channel_id,
            },
        )
    except DomainError as error:  # refused for good: a replay is refused too
        log.warning("discord command of binding %s refused: %s", binding.pk, error)
        return _say(f"Sorry, I can't take this now ({error.code}).")
    except Exception:
        get_redis().delete(interaction_key)  # nothing was started: not taken after all
        raise
    if not submission.new_turn:
        # It joined a queued turn (`collect`), whose answer goes to the first command;
        # deferring this one would leave it "thinking" until its token expires.
        return _say("Added to the request that is about to be answered.")
    return {"type": DEFERRED_CHANNEL_MESSAGE}


def _webhook_url(application_id: str, token: str) -> str:
    return f"{settings.DISCORD_API_BASE_URL.rstrip('/')}/webhooks/{application_id}/{token}"


def edit_original(*, application_id: str, token: str, content: str) -> None:
    """Replace the deferred response ("thinking...") with `content`."""
    url = f"{_webhook_url(application_id, token)}/messages/@original"
    _send("PATCH", url, {"content": content, "allowed_mentions": NO_MENTIONS})


def follow_up(*, application_id: str, token: str, content: str) -> None:
    _send(
        "POST",
        _webhook_url(application_id, token),
        {"content": content, "allowed_mentions": NO_MENTIONS},
    )


def create_message(*, token: str, channel_id: str, content: str) -> None:
    """Post `content` in a channel (or thread) as the bot: `POST /channels/{id}/messages`."""
    url = f"{settings.DISCORD_API_BASE_URL.rstrip('/')}/channels/{channel_id}/messages"
    body = {"content": content, "allowed_mentions": NO_MENTIONS}
    _send("POST", url, body, headers={"Authorization": f"Bot {token}"})


def _send(method: str, url: str, body: dict, headers: dict[str, str] | None = None) -> None:
    try:
        response = httpx.request(
            method, url, json=body, headers=headers, timeout=settings.CHANNEL_HTTP_TIMEOUT
        )
    except httpx.HTTPError as exc:
        raise DeliveryFailed(f"discord: {exc.__class__.__name__}", retryable=True)
    if response.status_code < 400:
        return
    # Not the URL: it holds the interaction token.
    detail = response.text[:200].replace("\n", " ")
    raise DeliveryFailed(
        f"discord: HTTP {response.status_code} on {method} {detail}",
        retryable=response.status_code == 429 or response.status_code >= 500,
        retry_after=parse_retry_after(response.headers),
    )
