"""Clients waiting for answers (`wait=`, event streams) hold no database connection."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django.db import connection

from tests.support import start_web

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="the connection pool is PostgreSQL's (SQLite opens a connection per thread)",
    ),
]


@pytest.fixture
def small_pool_web(platform_env, log_dir):
    """A web server whose pool has 2 connections and gives up on a third after 3 s."""
    env = dict(platform_env, DB_POOL_MIN="1", DB_POOL_MAX="2", DB_POOL_TIMEOUT="3")
    process, base_url = start_web(env, log_dir, "small-pool-web")
    yield base_url
    process.stop()


def test_many_clients_waiting_for_answers_share_two_database_connections(
    worker, small_pool_web, acme, agent, model
):
    model.add_rule(latency=4.0)  # longer than the pool's 3 s patience

    def ask(n: int) -> int:
        response = httpx.post(
            f"{small_pool_web}/api/v1/sessions/agent:ops:w{n}/messages",
            json={"content": f"question {n}", "wait": 20},
            headers=acme.headers,
            timeout=30,
        )
        return response.status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(ask, range(8)))

    assert statuses == [200] * 8
