"""Sending the Celery triggers for turns and sessions, on their tenant's queue."""

from __future__ import annotations

import logging

from agents.models import Turn

log = logging.getLogger(__name__)


def dispatch_turn(turn: Turn, tenant_slug: str) -> bool:
    """Send `run_turn` to `tenant.<slug>`. False if the broker refused (the row stays queued)."""
    from agents.tasks import run_turn

    try:
        run_turn.apply_async(kwargs={"tenant": tenant_slug, "turn_id": turn.pk})
    except Exception:
        log.warning("could not dispatch turn %s; it stays queued", turn.pk, exc_info=True)
        return False
    return True


def dispatch_session(tenant_slug: str, session_id: int, *, countdown: float = 0) -> bool:
    """Send `resume_session`: a parked session got a slot, or its wait is over."""
    from agents.tasks import resume_session

    try:
        resume_session.apply_async(
            kwargs={"tenant": tenant_slug, "session_id": session_id},
            countdown=countdown or None,
        )
    except Exception:
        log.warning("could not dispatch session %s", session_id, exc_info=True)
        return False
    return True
