"""Liveness (`/healthz`) and readiness (`/readyz`: database, Redis and broker answer)."""

from __future__ import annotations

import redis
from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.http import require_GET

from beamclaw.celery import app
from beamclaw.errors import error_body


@require_GET
def healthz(request) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _ping(url: str) -> None:
    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    finally:
        client.close()


def _check_broker() -> None:
    url = app.conf.broker_url
    if url.startswith(("redis://", "rediss://", "unix://")):
        _ping(url)
        return
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)


CHECKS = {
    "database": _check_database,
    "redis": lambda: _ping(settings.REDIS_URL),
    "broker": _check_broker,
}


@require_GET
def readyz(request) -> JsonResponse:
    results = {}
    for name, check in CHECKS.items():
        try:
            check()
            results[name] = "ok"
        except Exception as exc:  # any failure means "not ready", whatever its type
            results[name] = f"error: {exc.__class__.__name__}: {exc}"[:300]
    failed = [name for name, result in results.items() if result != "ok"]
    if failed:
        body = error_body(
            "not_ready", f"Not ready: {', '.join(failed)} unreachable.", {"checks": results}
        )
        return JsonResponse(body, status=503)
    return JsonResponse({"status": "ready", "checks": results})
