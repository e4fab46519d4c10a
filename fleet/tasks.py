"""The fleet's periodic task."""

from __future__ import annotations

from celery import shared_task

from . import capacity


# The name it had in the agents app: schedules and queued messages still find it.
@shared_task(name="agents.compute_capacity")
def compute_capacity() -> dict:
    """celery-beat runs this every CAPACITY_INTERVAL_SECONDS: the autoscaling signal."""
    return capacity.compute()["by_shard"]
