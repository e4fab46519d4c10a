"""Per-API-key request rate limit, one Redis round trip per request (fixed window)."""

from __future__ import annotations

import time

from redis.exceptions import RedisError
from rest_framework.throttling import BaseThrottle

from beamclaw.redis import get_redis, key


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

    def allow_request(self, request, view) -> bool:
        if self.limit is None or request.auth is None:
            return True
        now = time.time()
        window_start = int(now // self.window) * self.window
        counter = key("throttle", request.auth.prefix, window_start)
        pipe = get_redis().pipeline(transaction=False)
        pipe.incr(counter)
        pipe.expire(counter, self.window + 1)
        try:
            count, _ = pipe.execute()
        except RedisError:
            return True  # fail open: a Redis outage must not turn into an API outage
        if count <= self.limit:
            return True
        self._wait = window_start + self.window - now
        return False

    def wait(self) -> float:
        return max(self._wait, 1.0)
