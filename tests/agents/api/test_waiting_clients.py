"""Clients waiting for answers (`wait=`, event streams) hold no database connection; a
request that finds none free in time is told to come back (503), not failed (500)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg
import pytest
from django.db import connection

from tenants.models import ApiKey
from tests.support import start_web, wait_until

# PostgreSQL's connection pool is what these tests are about (SQLite opens a connection
# per thread); in CI on PostgreSQL a skip of them is a failure (tests/conftest.py).
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.requires_postgres]

POOL_TIMEOUT = 3


@pytest.fixture
def small_pool_web(platform_env, log_dir):
    """A web server whose pool has 2 connections and gives up on a third after 3 s."""
    env = dict(platform_env, DB_POOL_MIN="1", DB_POOL_MAX="2", DB_POOL_TIMEOUT=str(POOL_TIMEOUT))
    # Requests are held on the pool's connections by a lock on the API keys table: each
    # must read its key from the database, not from the key cache (tenants.admitted_keys).
    env["API_KEY_CACHE_SECONDS"] = "0"
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


def _connect() -> psycopg.Connection:
    """A connection of the test's own to the test database, outside Django's pool."""
    db = connection.settings_dict
    return psycopg.connect(
        dbname=db["NAME"],
        user=db["USER"] or None,
        password=db["PASSWORD"] or None,
        host=db["HOST"] or None,
        port=db["PORT"] or None,
    )


def _stuck_in_lock_waits(monitor: psycopg.Connection) -> int:
    """Connections of other clients waiting for a table lock in the test database."""
    with monitor.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock' "
            "AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


def test_a_request_that_finds_every_database_connection_taken_gets_503_service_busy(
    small_pool_web, acme
):
    tenant_url = f"{small_pool_web}/api/v1/tenant"
    assert httpx.get(tenant_url, headers=acme.headers, timeout=30).status_code == 200

    # Lock the API keys table, so two requests sit on the server's two pool connections.
    locker, monitor = _connect(), _connect()
    monitor.autocommit = True
    statuses: list[int] = []
    holders = [
        threading.Thread(
            target=lambda: statuses.append(
                httpx.get(tenant_url, headers=acme.headers, timeout=60).status_code
            )
        )
        for _ in range(2)
    ]
    try:
        locker.execute(f'LOCK TABLE "{ApiKey._meta.db_table}" IN ACCESS EXCLUSIVE MODE')
        for holder in holders:
            holder.start()
        wait_until(
            lambda: _stuck_in_lock_waits(monitor) == 2,
            timeout=30,
            message="two requests holding the pool's two connections",
        )

        busy = httpx.get(tenant_url, headers=acme.headers, timeout=60)

        assert busy.status_code == 503, busy.text
        assert busy.headers["content-type"].startswith("application/json")
        error = busy.json()["error"]
        assert error["code"] == "service_busy"
        assert error["message"]
        assert busy.headers["Retry-After"] == "2"
        assert busy.elapsed.total_seconds() >= POOL_TIMEOUT - 0.5  # it waited for the pool
    finally:
        locker.rollback()
        locker.close()
        monitor.close()
        for holder in holders:
            holder.join(60)
    # The held requests went on once the lock was gone: the server had not broken.
    assert statuses == [200, 200]
    assert httpx.get(tenant_url, headers=acme.headers, timeout=30).status_code == 200
