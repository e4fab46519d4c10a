"""Slack and Discord webhooks in, replies out (docs/architecture.md, "How a turn flows").

A webhook verifies its signature over the raw body, submits the message as a turn with
`source` slack/discord and records where the answer goes (a ChannelDelivery); when the
turn finishes, `delivery` posts the answer from a Celery task. What both channels share
is here: the two exceptions and the replay window.
"""

from __future__ import annotations

import time

from django.conf import settings


class RequestRefused(Exception):
    """A webhook request we do not trust: answered 401 with this code, nothing else done."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


class DeliveryFailed(Exception):
    """Posting a reply failed. `retryable` for 429, 5xx and network errors; `retry_after`
    is the wait the API asked for, if it did."""

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None):
        super().__init__(message)
        self.message, self.retryable, self.retry_after = message, retryable, retry_after


def check_timestamp(raw: str, *, now: float | None = None) -> None:
    """Refuse a signed request from outside the window: a replay of a captured request."""
    try:
        sent = int(raw)
    except (TypeError, ValueError):
        raise RequestRefused("stale_timestamp", "The request timestamp is not a Unix time.")
    max_age = settings.CHANNEL_SIGNATURE_MAX_AGE_SECONDS
    if abs((time.time() if now is None else now) - sent) > max_age:
        raise RequestRefused(
            "stale_timestamp", f"The request timestamp is more than {max_age} s away from now."
        )
