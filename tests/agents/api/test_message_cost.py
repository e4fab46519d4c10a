"""What one `POST .../messages` with `wait` costs the web process: thread hops and SQL
statements, counted, so a change that adds one to every turn shows up here."""

from __future__ import annotations

import asyncio
import json

import pytest
from django.db.backends.utils import CursorWrapper
from django.test import AsyncClient

from tests.support import count_thread_hops

pytestmark = pytest.mark.django_db(transaction=True)

SESSION = "agent:ops:main"
DJANGOS_OWN = {
    "Signal.asend.<locals>.sync_send",
    "SimpleTemplateResponse.render",
    "HttpResponseBase.close",
}


def record_statements(monkeypatch) -> list[str]:
    """From now on, every SQL statement this process sends, from any thread (Django's
    CaptureQueriesContext sees only the test thread's connection)."""
    statements: list[str] = []
    execute = CursorWrapper.execute

    def recorded(self, sql, params=None):
        statements.append(sql)
        return execute(self, sql, params)

    monkeypatch.setattr(CursorWrapper, "execute", recorded)
    return statements


def send(acme, content: str):
    async def post():
        return await AsyncClient().post(
            f"/api/v1/sessions/{SESSION}/messages",
            json.dumps({"content": content, "wait": 30}),
            content_type="application/json",
            headers=acme.headers,
        )

    return asyncio.run(post())


def test_a_message_answered_within_wait_costs_two_thread_hops_of_ours_and_four_statements(
    worker, acme, agent, monkeypatch, settings
):
    # The open-streams watcher's own key re-check must not land inside the count.
    settings.STREAM_ACCESS_CHECK_SECONDS = settings.STREAM_LEASE_SECONDS = 600
    # The first message creates the session and admits the key: not the steady state.
    assert send(acme, "hello").status_code == 200
    hops = count_thread_hops(monkeypatch)
    statements = record_statements(monkeypatch)

    response = send(acme, "and again")

    assert response.status_code == 200, response.content
    assert response.json()["turn"]["reply"]
    # Besides Django's own (request_started's receivers, rendering, response.close()),
    # the view's two: storing the message, reading the finished turn. No middleware hook,
    # no hop for authentication or throttling.
    assert [hop for hop in hops if hop not in DJANGOS_OWN] == ["_submit", "turn_with_reply"]
    assert len(hops) <= 5, hops
    # The session (locked) with its agent, the turn, the message, the finished turn; not
    # counting SQLite's BEGIN IMMEDIATE, as PostgreSQL's BEGIN is not seen here either.
    queries = [sql for sql in statements if not sql.startswith("BEGIN")]
    assert len(queries) == 4, statements
