"""What a simple turn costs the worker in database statements: a guard against waste
creeping back onto the turn path, where round trips, not Python, are the cost."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agents import services, tasks
from agents.models import Turn

pytestmark = [pytest.mark.django_db, pytest.mark.requires_postgres]

# The task's look-up, the fence claim, the next turn (with its agent, tenant, session and
# provider credential), its start (lock the session, claim the turn, number its message),
# the history, its end (lock, the answer, the usage row, the turn), and one look for
# another turn after letting the session go.
SIMPLE_TURN_STATEMENTS = 12


def _run_one(tenant, content: str) -> list[str]:
    turn = services.submit_message(tenant=tenant, session_key="agent:ops:main", content=content)
    with CaptureQueriesContext(connection) as queries:
        tasks.run_turn(tenant=tenant.slug, turn_id=turn.turn.pk)
    assert Turn.objects.get(pk=turn.turn.pk).status == "succeeded"
    # The test's own transaction turns the turn's transactions into savepoints: not ours.
    return [q["sql"] for q in queries.captured_queries if "SAVEPOINT" not in q["sql"]]


def test_a_simple_turn_costs_the_worker_twelve_database_statements(acme, agent):
    # In the test's transaction on_commit never fires: no worker runs these turns. The
    # tenant's first model call of the day seeds its budget counters from the usage table.
    _run_one(acme.tenant, "hello")

    for content in ("again", "and again"):
        statements = _run_one(acme.tenant, content)
        assert len(statements) <= SIMPLE_TURN_STATEMENTS, "\n\n".join(statements)
