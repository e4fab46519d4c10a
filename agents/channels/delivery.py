"""Answers back to Slack and Discord: when a channel turn finishes, post what it said.

A turn with a ChannelDelivery makes it due in its final fenced transaction
(`agents.runtime.fenced.finish`); the worker then sends the Celery task
`agents.deliver_reply`, which posts the answer (or a short note if the turn failed or was
cancelled). If that trigger is lost (the worker died right after the commit, the broker
was down), the reaper sends it again. A delivery is claimed in the database before
anything is posted, and the pieces of a long answer are counted as they go out, so one
turn is never answered twice and a retry after a 429 or 5xx continues where the last
attempt stopped.

The turns are those of webhooks (an answer to a Slack message or a Discord command) and
those of cron jobs with a delivery (`channel_target`: a post in a channel, as the bot).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from agents.models import (
    ChannelBinding,
    ChannelDelivery,
    ChannelKind,
    CronRun,
    Message,
    MessageRole,
    Turn,
    TurnStatus,
)
from beamclaw.crypto import decrypt
from beamclaw.errors import InvalidInput

from . import DeliveryFailed, bindings, discord, slack

log = logging.getLogger(__name__)

# A delivery task holds its row this long: more than posting every piece takes (each
# call is bounded by CHANNEL_HTTP_TIMEOUT), so a duplicate trigger meanwhile does nothing.
CLAIM_SECONDS = 300
MAX_RETRY_DELAY_SECONDS = 300.0


@dataclass(frozen=True)
class Outcome:
    """What a delivery attempt did; `retry_in` is set when the task should try again."""

    status: str  # delivered | skipped | failed | retry
    retry_in: float | None = None


def deliver_reply(*, tenant_slug: str, turn_id: int) -> Outcome:
    """Post the finished turn's answer to where its message came from, once."""
    delivery = (
        ChannelDelivery.objects.filter(turn_id=turn_id, turn__tenant__slug=tenant_slug)
        .select_related("binding", "turn")
        .first()
    )
    if delivery is None or delivery.status != "pending" or not delivery.turn.is_final:
        return Outcome("skipped")
    now = timezone.now()
    claimed = (
        ChannelDelivery.objects.filter(pk=delivery.pk, delivered_at__isnull=True)
        .filter(failed_at__isnull=True)
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .update(claimed_until=now + timedelta(seconds=CLAIM_SECONDS), attempts=F("attempts") + 1)
    )
    if not claimed:
        return Outcome("skipped")  # delivered meanwhile, or another task is at it
    delivery.refresh_from_db()
    parts = reply_parts(delivery)
    try:
        for index in range(delivery.parts_sent, len(parts)):
            _post(delivery, index, parts[index])
            ChannelDelivery.objects.filter(pk=delivery.pk).update(parts_sent=index + 1)
    except DeliveryFailed as failure:
        retry = failure.retryable and delivery.attempts < settings.CHANNEL_DELIVERY_MAX_ATTEMPTS
        retry_in = _retry_delay(failure, delivery.attempts) if retry else None
        now = timezone.now()
        ChannelDelivery.objects.filter(pk=delivery.pk).update(
            claimed_until=None,
            last_error=failure.message[:1000],
            failed_at=None if retry else now,
            # The reaper re-sends a trigger only once this retry is overdue.
            next_attempt_at=now + timedelta(seconds=retry_in) if retry else F("next_attempt_at"),
        )
        log.warning(
            "reply of turn %s, attempt %s: %s%s",
            turn_id,
            delivery.attempts,
            failure.message,
            "; retrying" if retry else "; giving up",
        )
        if not retry:
            return Outcome("failed")
        return Outcome("retry", retry_in=retry_in)
    ChannelDelivery.objects.filter(pk=delivery.pk).update(
        delivered_at=timezone.now(), claimed_until=None, last_error=""
    )
    return Outcome("delivered")


def _retry_delay(failure: DeliveryFailed, attempts: int) -> float:
    if failure.retry_after is not None:
        return min(failure.retry_after, MAX_RETRY_DELAY_SECONDS)
    backoff = settings.CHANNEL_DELIVERY_BACKOFF_BASE * 2 ** (attempts - 1)
    return min(backoff, MAX_RETRY_DELAY_SECONDS)


def _post(delivery: ChannelDelivery, index: int, text: str) -> None:
    binding, target = delivery.binding, delivery.target
    if binding.kind == ChannelKind.SLACK:
        slack.post_message(
            token=bindings.bot_token(binding),
            channel=target["channel"],
            text=text,
            thread_ts=target.get("thread_ts") or "",
        )
        return
    if "token_encrypted" not in target:  # no interaction to answer: post as the bot
        discord.create_message(
            token=bindings.bot_token(binding), channel_id=target["channel_id"], content=text
        )
        return
    address = {
        "application_id": target["application_id"],
        "token": decrypt(target["token_encrypted"]),
    }
    if index == 0:
        discord.edit_original(**address, content=text)
    else:
        discord.follow_up(**address, content=text)


def reply_parts(delivery: ChannelDelivery) -> list[str]:
    limit = slack.PART_CHARS if delivery.binding.kind == ChannelKind.SLACK else discord.PART_CHARS
    return capped_parts(reply_text(delivery.turn), limit, turn_id=delivery.turn_id)


def capped_parts(text: str, limit: int, *, turn_id: int) -> list[str]:
    """`split_text`, at most CHANNEL_REPLY_MAX_PARTS pieces; the last of a cut reply ends
    with a note pointing at the whole answer in the API."""
    max_parts = settings.CHANNEL_REPLY_MAX_PARTS
    # Only what can be posted is split: splitting copies the rest for every piece.
    parts = split_text(text[: limit * max_parts + 1], limit)
    if len(parts) <= max_parts and len(text) <= limit * max_parts:
        return parts
    note = f"\n\n[Cut here: the whole answer is turn {turn_id} in the API.]"
    parts = parts[:max_parts]
    parts[-1] = parts[-1][: limit - len(note)] + note
    return parts


def reply_text(turn: Turn) -> str:
    """The turn's final answer; for a turn that did not succeed, a short note saying so."""
    if turn.status == TurnStatus.SUCCEEDED:
        final = (
            Message.objects.filter(turn=turn, role=MessageRole.ASSISTANT, seq__isnull=False)
            .order_by("-seq")
            .first()
        )
        answer = final.content.strip() if final else ""
        return answer or "(The agent finished without an answer.)"
    if turn.status == TurnStatus.CANCELLED:
        return f"(Stopped before answering: {turn.error_code or 'cancelled'}.)"
    # The code, not the message: an error message may name internals.
    code = turn.error_code or "error"
    run = None
    if turn.source == "cron":
        run = CronRun.objects.filter(turn=turn).select_related("job").first()
    if run is not None:  # nobody asked in the channel: say which job this is
        job = f"'{run.job.name}'" if run.job.name else str(run.job_id)
        return f"Scheduled job {job} failed this time ({code})."
    return f"Sorry, I could not answer this time ({code})."


# Slack ids are upper-case letters and digits (C... channel, G... private, D... direct);
# a message ts is seconds.microseconds. Discord ids are snowflakes, up to 20 digits.
SLACK_CHANNEL_ID = re.compile(r"[A-Z0-9]{2,30}")
SLACK_TS = re.compile(r"[0-9]{1,12}\.[0-9]{1,9}")
DISCORD_CHANNEL_ID = re.compile(r"[0-9]{1,20}")


def channel_target(binding: ChannelBinding, *, channel: str, thread_ts: str = "") -> dict:
    """The ChannelDelivery target for a post in `channel` by the binding's bot, with no
    message to answer (a cron job's run). An `invalid_delivery` InvalidInput says what is
    wrong with the address."""
    if not binding.bot_token_encrypted:
        raise InvalidInput(
            "invalid_delivery",
            f"Channel binding {binding.pk} has no bot token, so it cannot post; "
            "give it one (admin: Agents > Channel bindings).",
        )
    if binding.kind == ChannelKind.SLACK:
        if not SLACK_CHANNEL_ID.fullmatch(channel):
            raise InvalidInput(
                "invalid_delivery",
                f"'{channel}' is not a Slack channel id; give the id (C..., G... or D...), "
                "not the name: Slack shows it in the channel's details.",
            )
        if thread_ts and not SLACK_TS.fullmatch(thread_ts):
            raise InvalidInput(
                "invalid_delivery",
                f"'{thread_ts}' is not a Slack message ts; give the thread's parent ts, "
                "e.g. '1700000000.000100'.",
            )
        return {"channel": channel, "thread_ts": thread_ts}
    if thread_ts:
        raise InvalidInput(
            "invalid_delivery",
            "'thread_ts' is for Slack; a Discord thread is a channel: give its id as 'channel'.",
        )
    if not DISCORD_CHANNEL_ID.fullmatch(channel):
        raise InvalidInput(
            "invalid_delivery",
            f"'{channel}' is not a Discord channel id; give the number that Discord's "
            "'Copy Channel ID' (developer mode) gives.",
        )
    return {"channel_id": channel}


def split_text(text: str, limit: int) -> list[str]:
    """Pieces of at most `limit` characters, cut at a paragraph break if there is one in
    the second half of the piece, else at a line break, else a space, else anywhere."""
    pieces: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        for separator in ("\n\n", "\n", " "):
            cut = rest.rfind(separator, limit // 2, limit)
            if cut != -1:
                pieces.append(rest[:cut].rstrip())
                rest = rest[cut + len(separator) :].lstrip("\n")
                break
        else:
            pieces.append(rest[:limit])
            rest = rest[limit:]
    if rest or not pieces:
        pieces.append(rest)
    return [piece for piece in pieces if piece] or [""]
