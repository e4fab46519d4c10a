"""The pipeline floor: the least a turn of our shape can cost, measured beside it.

The same HTTP request as a turn (POST a message with `wait`), served by the same uvicorn
workers through Django's async path, then what a turn cannot do without: one transaction
that inserts one row, one Celery task to the tenant's queue (sent on commit), whose worker
writes one row in one transaction and publishes one event (XADD), while the view waits on
that stream with XREAD BLOCK. No authentication, limits, lease, fence or model call: what
the platform adds on top of this is what `overhead` sets against it. With `?latency=L` the
task holds its worker thread L seconds, as a model call would (`concurrency`'s floor).
"""

from __future__ import annotations

import json
import time

from asgiref.sync import sync_to_async
from django.db import connection, transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from beamclaw.celery import app
from beamclaw.redis import get_async_stream_redis, get_redis, key

TABLE = "bench_floor_row"
TASK = "bench.floor_turn"


def create_table() -> None:
    """The floor's one table (the bench's database is its own, made for the run)."""
    postgres = connection.vendor == "postgresql"
    id_column = "BIGSERIAL PRIMARY KEY" if postgres else "INTEGER PRIMARY KEY AUTOINCREMENT"
    now = "now()" if postgres else "CURRENT_TIMESTAMP"
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {TABLE} (id {id_column}, "
            "session_key VARCHAR(200) NOT NULL, reply_to BIGINT, content TEXT NOT NULL, "
            f"created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT {now})"
        )


def stream_key(row_id: int) -> str:
    return key("bench-floor", row_id)


def _submit(tenant: str, session_key: str, content: str, latency: float) -> int:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {TABLE} (session_key, content) VALUES (%s, %s) RETURNING id",
            [session_key, content],
        )
        row_id = cursor.fetchone()[0]
        # As a turn's trigger: sent once the row is committed, to the tenant's queue.
        transaction.on_commit(
            lambda: app.send_task(
                TASK, kwargs={"tenant": tenant, "row_id": row_id, "latency": latency}
            )
        )
    return row_id


@csrf_exempt  # as the API's views (DRF exempts them): an API client has no CSRF cookie
async def post_message(request: HttpRequest, tenant: str, key: str) -> JsonResponse:
    body = json.loads(request.body)
    latency = float(request.GET.get("latency") or 0)
    row_id = await sync_to_async(_submit)(tenant, key, body["content"], latency)
    wait_ms = int(float(body.get("wait") or 0) * 1000)
    answered = None
    if wait_ms:  # BLOCK 0 would wait for ever
        redis = get_async_stream_redis()
        answered = await redis.xread({stream_key(row_id): "0-0"}, block=wait_ms, count=1)
    status = "succeeded" if answered else "queued"
    return JsonResponse({"turn": {"id": row_id, "status": status}}, status=200 if answered else 202)


@app.task(name=TASK)
def floor_turn(tenant: str, row_id: int, latency: float = 0.0) -> None:
    """The worker's part: one row in one transaction, then the one event."""
    if latency:
        time.sleep(latency)  # the model's answer, without a model
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {TABLE} (session_key, reply_to, content) VALUES ('', %s, 'reply')",
            [row_id],
        )
    get_redis().xadd(stream_key(row_id), {"status": "succeeded"})
