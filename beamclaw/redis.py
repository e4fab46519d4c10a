"""Shared Redis clients and the key naming every BeamClaw key goes through."""

from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aioredis
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from beamclaw.installation import installation_id

_lock = threading.Lock()
_scripts: dict[Path | str, Any] = {}


def lua_script(client: redis.Redis | aioredis.Redis, source: Path | str):
    """The Lua script in the file `source` (or the script `source`), registered on `client`
    once: it runs by EVALSHA, and falls back to EVAL after a Redis restart."""
    cached = _scripts.get(source)
    if cached is None or cached.registered_client is not client:
        cached = client.register_script(source.read_text() if isinstance(source, Path) else source)
        _scripts[source] = cached
    return cached


@lru_cache(maxsize=8)
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=10,
        socket_connect_timeout=3,
        health_check_interval=30,
    )


def get_redis() -> redis.Redis:
    """The process-wide client for REDIS_URL (a connection pool, thread-safe)."""
    return _client(settings.REDIS_URL)


_async_clients: dict[tuple[str, int, bool], aioredis.Redis] = {}


def get_async_redis() -> aioredis.Redis:
    """An asyncio client for short commands on the running event loop (clients can't cross
    loops). Its pool is not the streams' (get_async_stream_redis): open streams can never
    take the connections the rate limit and the stream slots need."""
    return _async_client(blocking_reads=False)


def get_async_stream_redis() -> aioredis.Redis:
    """An asyncio client for blocking reads (XREAD of `wait=` and event streams) on the
    running event loop: one connection per waiting client."""
    return _async_client(blocking_reads=True)


def _async_client(*, blocking_reads: bool) -> aioredis.Redis:
    import asyncio

    client_key = (settings.REDIS_URL, id(asyncio.get_running_loop()), blocking_reads)
    with _lock:
        client = _async_clients.get(client_key)
        if client is None:
            if blocking_reads:
                # Reads last up to WAIT_MAX_SECONDS: the read timeout must outlast them
                # (redis-py's default is 5 s). The web admits no more waiting clients than
                # the pool holds (agents.api.open_streams caps them at its size).
                read_timeout = settings.WAIT_MAX_SECONDS + 10
                size = settings.REDIS_ASYNC_MAX_CONNECTIONS
            else:
                read_timeout, size = 10, settings.REDIS_ASYNC_COMMAND_CONNECTIONS
            pool = aioredis.BlockingConnectionPool.from_url(
                settings.REDIS_URL,
                decode_responses=True,
                socket_connect_timeout=3,
                socket_timeout=read_timeout,
                max_connections=size,
                timeout=5,
            )
            client = aioredis.Redis(connection_pool=pool)
            _async_clients[client_key] = client
    return client


def row_tag(row) -> str:
    """`<id>-<created µs>`: names a database row in Redis keys.

    Ids repeat when a database is recreated against the same Redis (a dev reset, a test
    run); the creation time keeps a new row from reading an old row's events or flags.
    """
    return f"{row.pk}-{int(row.created_at.timestamp() * 1_000_000)}"


def key_prefix() -> str:
    """`bc:<installation>:`, how every key of this installation starts."""
    return f"{settings.REDIS_KEY_PREFIX}:{installation_id()}:"


def broker_key_prefix() -> str:
    """`bc:<installation>:celery:`, before every key of the Celery broker on Redis (its
    queues, bindings, reserved messages): an older installation's queued triggers name
    turn ids of another database."""
    return key_prefix() + "celery:"


def key(*parts: object) -> str:
    """`bc:<installation>:part:part...`: the installation's id comes first, since ids in
    the parts (tenant 1) repeat across databases sharing one Redis."""
    return key_prefix() + ":".join(str(p) for p in parts)


@receiver(setting_changed)
def _forget_clients(setting: str, **kwargs) -> None:
    if setting == "REDIS_URL":
        _client.cache_clear()
        _async_clients.clear()
