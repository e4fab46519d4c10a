"""Sending the Celery trigger for a turn, on its tenant's queue."""

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
