"""Thin Celery tasks: load ids, call the runtime."""

from __future__ import annotations

from celery import shared_task

from agents.models import Turn
from agents.runtime.loop import run_session


@shared_task(name="agents.run_turn")
def run_turn(*, tenant: str, turn_id: int) -> None:
    """Run the turn's session (this turn and any queued before it), in order.

    `tenant` is carried explicitly: it routes the task to `tenant.<slug>`.
    """
    session_id = (
        Turn.objects.filter(pk=turn_id, tenant__slug=tenant)
        .values_list("session_id", flat=True)
        .first()
    )
    if session_id is not None:
        run_session(session_id)
