"""Server-Sent Events from a Redis stream, with Last-Event-ID resume.

A stream the server has to end (the caller's key revoked, its tenant suspended, Redis
unreachable) ends after a whole frame with one last `event: error` frame whose data
holds a `code` and a `message`; it carries no id, so Last-Event-ID still names the last
real event and a client can resume from it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from django.conf import settings
from redis.exceptions import RedisError
from rest_framework.renderers import BaseRenderer

from agents.runtime.events import TERMINAL_EVENT, decode
from beamclaw.errors import InvalidInput
from beamclaw.redis import get_async_stream_redis

from .open_streams import Ending, OpenStream, open_streams

log = logging.getLogger(__name__)

EVENTS_UNAVAILABLE = Ending(
    "events_unavailable",
    "Live events are unavailable right now; reconnect with Last-Event-ID to resume.",
)


# A Redis stream id: milliseconds, optionally "-" and a sequence, each a 64-bit number.
_STREAM_ID = re.compile(r"([0-9]{1,20})(?:-([0-9]{1,20}))?")


def parse_last_event_id(value: str | None) -> str:
    """The event id a client resumes after ("0-0" for the start). Checked here because it
    is echoed into the stream's `id:` line, where a line break would forge events, and
    Redis refuses anything else with an error that is no fault of the server's."""
    if not value:
        return "0-0"
    match = _STREAM_ID.fullmatch(value)
    if match is None or any(int(part) >= 2**64 for part in match.groups() if part):
        raise InvalidInput(
            "invalid_last_event_id",
            "Last-Event-ID (or last_event_id) must be an event id this API sent, "
            "like '1733212345678-0'.",
        )
    return value


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


def format_ending(ending: Ending) -> str:
    body = json.dumps({"code": ending.code, "message": ending.message})
    return f"event: error\ndata: {body}\n\n"


async def _read_unless_ended(redis, streams: dict[str, str], block_ms: int, held: OpenStream):
    """XREAD BLOCK, cut short when the server ends the stream (then None)."""
    if held.ending is not None:
        return None
    read = asyncio.ensure_future(redis.xread(streams, block=block_ms, count=200))
    ended = asyncio.ensure_future(held.ended.wait())
    try:
        await asyncio.wait({read, ended}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        ended.cancel()
        if not read.done():
            read.cancel()  # redis-py drops that connection rather than leave it mid-reply
    if held.ending is not None:
        if read.done() and not read.cancelled():
            read.exception()  # retrieved, so asyncio does not log it: the stream ends anyway
        return None
    return read.result()


async def stream(
    stream_key: str,
    last_id: str,
    *,
    held: OpenStream,
    end_on_finish: bool,
    finished_without_events: Callable[[], Awaitable[dict | None]] | None = None,
) -> AsyncIterator[str]:
    """Yield SSE frames after `last_id`; a comment every heartbeat keeps proxies open.

    `held` is the stream's admitted slot, given back when the stream ends. For a turn
    whose stream has expired, `finished_without_events` gives the final summary from the
    database so the client still sees a clean end.
    """
    held.started = True
    try:
        yield ": stream open\n\n"
        try:
            redis = get_async_stream_redis()
            if finished_without_events is not None and not await redis.exists(stream_key):
                summary = await finished_without_events()
                if summary is not None:
                    yield format_event(last_id or "0-0", {"type": TERMINAL_EVENT, **summary})
                    return
            block_ms = int(settings.SSE_HEARTBEAT_SECONDS * 1000)
            while True:
                reply = await _read_unless_ended(redis, {stream_key: last_id}, block_ms, held)
                if held.ending is not None:
                    yield format_ending(held.ending)
                    return
                if not reply:
                    yield ": keep-alive\n\n"
                    continue
                for entry_id, fields in reply[0][1]:
                    last_id = entry_id
                    event = decode(fields)
                    yield format_event(entry_id, event)
                    if end_on_finish and event["type"] == TERMINAL_EVENT:
                        return
        except RedisError as error:
            # Redis went away or this process's pool is exhausted: say so, then close.
            log.warning("event stream %s ended: %s", stream_key, error)
            yield format_ending(EVENTS_UNAVAILABLE)
    finally:
        await open_streams().release(held)


async def wait_for_finish(done_stream: str, timeout: float, *, held: OpenStream) -> bool:
    """Block until the turn's `turn.finished` is published (its done stream gets its one
    entry) or the timeout; never polls the DB, and wakes once whatever the turn streams.

    Ends early (False) when the server ends `held`.
    """
    redis = get_async_stream_redis()
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            reply = await _read_unless_ended(
                redis, {done_stream: "0-0"}, max(1, int(remaining * 1000)), held
            )
        except RedisError:
            return False  # no live events without Redis: answer 202, the turn still runs
        if held.ending is not None:
            return False
        if reply:
            return True
    return False
