"""Turn events on Redis streams: one stream per turn and one per session.

Writers XADD; readers (SSE, `wait=`, the CLI) block on XREAD from the last id they saw,
so nobody polls the database. Text deltas are coalesced so a fast stream of tokens costs
a handful of round trips, not one per token.
"""

from __future__ import annotations

import json
import time
from typing import Any

from django.conf import settings
from redis.client import Pipeline

from agents.models import Session, Turn
from beamclaw.redis import get_redis, key, row_tag

TERMINAL_EVENT = "turn.finished"
STREAM_MAXLEN = 10_000


def turn_stream(turn: Turn) -> str:
    return key("t", turn.tenant_id, "turn", row_tag(turn), "events")


def turn_done_stream(turn: Turn) -> str:
    """Written once, with `turn.finished`: a client that only waits for the end (`wait=`)
    blocks here and wakes once, not for every event of the turn."""
    return key("t", turn.tenant_id, "turn", row_tag(turn), "done")


def session_stream(session: Session) -> str:
    return key("t", session.tenant_id, "session", row_tag(session), "events")


def publish(turn: Turn, events: list[tuple[str, dict]]) -> None:
    """XADD each event to the turn's and its session's stream, in one round trip."""
    if not events:
        return
    pipe = get_redis().pipeline(transaction=False)
    add_to(pipe, turn, events)
    pipe.execute()


def add_to(pipe: Pipeline, turn: Turn, events: list[tuple[str, dict]]) -> None:
    """Queue the commands that publish `events` on `pipe`, to go with other commands in one
    round trip: two XADDs per event (turn stream, then session stream), then the expiries."""
    if not events:
        return
    ttl = settings.EVENT_STREAM_TTL_SECONDS
    streams = (turn_stream(turn), session_stream(turn.session))
    for event_type, data in events:
        fields = {"type": event_type, "turn_id": turn.pk, "data": json.dumps(data, default=str)}
        for stream in streams:
            pipe.xadd(stream, fields, maxlen=STREAM_MAXLEN, approximate=True)
    for stream in streams:
        pipe.expire(stream, ttl)
    if any(event_type == TERMINAL_EVENT for event_type, _ in events):
        pipe.xadd(turn_done_stream(turn), {"turn_id": turn.pk})
        pipe.expire(turn_done_stream(turn), ttl)


def decode(fields: dict[str, str]) -> dict[str, Any]:
    return {
        "type": fields["type"],
        "turn_id": int(fields["turn_id"]),
        "data": json.loads(fields.get("data") or "{}"),
    }


class DeltaBuffer:
    """Collects streamed text and publishes it at most every `interval` seconds.

    The first piece goes out at once: a model that pauses after its first words (or a
    warm worker whose first token comes within `interval`) must not hold them back until
    the next piece arrives.
    """

    def __init__(self, publish_one, *, interval: float = 0.05):
        self._publish_one = publish_one
        self._interval = interval
        self._parts: list[str] = []
        self._last = float("-inf")

    def __call__(self, text: str) -> None:
        if not text:
            return
        self._parts.append(text)
        if time.monotonic() - self._last >= self._interval:
            self.flush()

    def flush(self, publish_one=None) -> None:
        """Publish what is held; through `publish_one` if given (the last piece of a call
        can go out with the turn's next round trip)."""
        if self._parts:
            (publish_one or self._publish_one)("message.delta", {"text": "".join(self._parts)})
            self._parts = []
        self._last = time.monotonic()
