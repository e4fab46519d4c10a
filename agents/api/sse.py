"""Server-Sent Events from a Redis stream, with Last-Event-ID resume."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable

from django.conf import settings
from redis.exceptions import RedisError
from rest_framework.renderers import BaseRenderer

from agents.runtime.events import TERMINAL_EVENT, decode
from beamclaw.redis import get_async_redis


class EventStreamRenderer(BaseRenderer):
    """Lets clients send `Accept: text/event-stream`; errors still render as JSON."""

    media_type = "text/event-stream"
    format = "sse"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        return json.dumps(data).encode()


def format_event(event_id: str, event: dict) -> str:
    body = json.dumps({"turn_id": event["turn_id"], **event["data"]})
    return f"id: {event_id}\nevent: {event['type']}\ndata: {body}\n\n"


async def stream(
    stream_key: str,
    last_id: str,
    *,
    end_on_finish: bool,
    finished_without_events: Callable[[], Awaitable[dict | None]] | None = None,
) -> AsyncIterator[str]:
    """Yield SSE frames after `last_id`; a comment every heartbeat keeps proxies open.

    For a turn whose stream has expired, `finished_without_events` gives the final
    summary from the database so the client still sees a clean end.
    """
    redis = get_async_redis()
    yield ": stream open\n\n"
    if finished_without_events is not None and not await redis.exists(stream_key):
        summary = await finished_without_events()
        if summary is not None:
            yield format_event(last_id or "0-0", {"type": TERMINAL_EVENT, **summary})
            return
    block_ms = int(settings.SSE_HEARTBEAT_SECONDS * 1000)
    while True:
        reply = await redis.xread({stream_key: last_id}, block=block_ms, count=200)
        if not reply:
            yield ": keep-alive\n\n"
            continue
        for entry_id, fields in reply[0][1]:
            last_id = entry_id
            event = decode(fields)
            yield format_event(entry_id, event)
            if end_on_finish and event["type"] == TERMINAL_EVENT:
                return


async def wait_for_finish(stream_key: str, timeout: float, *, after: str = "0-0") -> bool:
    """Block on the turn's stream until `turn.finished` or the timeout; never polls the DB.

    `after`: an event id the caller has already seen (the `turn.queued` it published).
    """
    import time

    redis = get_async_redis()
    deadline = time.monotonic() + timeout
    last_id = after
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            reply = await redis.xread({stream_key: last_id}, block=max(1, int(remaining * 1000)))
        except RedisError:
            return False  # no live events without Redis: answer 202, the turn still runs
        for entry_id, fields in reply[0][1] if reply else []:
            last_id = entry_id
            if fields.get("type") == TERMINAL_EVENT:
                return True
    return False
