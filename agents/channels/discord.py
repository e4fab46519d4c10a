"""Discord: verifying interaction requests, taking slash commands, editing the answer in.

Discord signs each interaction with Ed25519 (`X-Signature-Ed25519` over timestamp + raw
body, checked with the application's public key), needs an answer within 3 seconds, and
lets the interaction token edit the response for 15 minutes. So a command is answered
at once with a deferred response ("thinking..."), and the agent's answer replaces it.
With no interaction to answer (a cron job's run), the bot posts in a channel instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import httpx
from django.conf import settings
from django.db import transaction
from nacl.exceptions import BadSignatureError, CryptoError
from nacl.signing import VerifyKey

from agents.models import ChannelBinding, ChannelDelivery
from agents.services import submit_message
from beamclaw.api.errors import ApiError
from beamclaw.crypto import encrypt

from . import DeliveryFailed, RequestRefused, bindings, retry_after

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
    try:
        with transaction.atomic():  # the target is stored before the turn is dispatched
            submission = submit_message(
                tenant=binding.tenant,
                session_key=session_key_for(binding, command),
                content=command.text,
                source=SOURCE,
            )
            target = {
                "application_id": application_id,
                "token_encrypted": encrypt(command.token),
                "channel_id": command.channel_id,
            }
            ChannelDelivery.objects.get_or_create(
                turn=submission.turn, defaults={"binding": binding, "target": target}
            )
    except ApiError as error:
        log.warning("discord command of binding %s refused: %s", binding.pk, error)
        return _say(f"Sorry, I can't take this now ({error.error_code}).")
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
        retry_after=retry_after(response.headers),
    )
