"""Per-API-key request rate limit, one Redis round trip per request (fixed window)."""

from __future__ import annotations

import time

from redis.exceptions import RedisError
from rest_framework.throttling import BaseThrottle

from beamclaw.redis import get_async_redis, get_redis, key


class ApiKeyRateThrottle(BaseThrottle):
    scope = "api_key"

    def __init__(self) -> None:
        from rest_framework.settings import api_settings

        rate = api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)
        self.limit, self.window = self.parse_rate(rate)
        self._wait = 0.0

    @staticmethod
    def parse_rate(rate: str | None) -> tuple[int | None, int]:
        if not rate:
            return None, 60
        count, period = rate.split("/")
        seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400}[period[0]]
        return int(count), seconds

    def _counter(self, request) -> tuple[str, float, int] | None:
        """The window's counter key, now and the window's start; None when not limited."""
        if self.limit is None or request.auth is None:
            return None
        now = time.time()
        window_start = int(now // self.window) * self.window
        return key("throttle", request.auth.prefix, window_start), now, window_start

    def _allowed(self, count: int, now: float, window_start: int) -> bool:
        if count <= self.limit:
            return True
        self._wait = window_start + self.window - now
        return False

    def allow_request(self, request, view) -> bool:
        if (counter := self._counter(request)) is None:
            return True
        name, now, window_start = counter
        pipe = get_redis().pipeline(transaction=False)
        pipe.incr(name)
        pipe.expire(name, self.window + 1)
        try:
            count, _ = pipe.execute()
        except RedisError:
            return True  # fail open: a Redis outage must not turn into an API outage
        return self._allowed(count, now, window_start)

    async def aallow_request(self, request, view) -> bool:
        """allow_request on the event loop, for async views (AsyncAPIView)."""
        if (counter := self._counter(request)) is None:
            return True
        name, now, window_start = counter
        pipe = get_async_redis().pipeline(transaction=False)
        pipe.incr(name)
        pipe.expire(name, self.window + 1)
        try:
            count, _ = await pipe.execute()
        except RedisError:
            return True  # fail open, as allow_request
        return self._allowed(count, now, window_start)

    def wait(self) -> float:
        return max(self._wait, 1.0)
