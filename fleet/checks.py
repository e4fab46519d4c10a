"""System checks of how a worker was started (run by the worker itself at start).

Django's `manage.py check` cannot see a worker's command line, so the worker records its
options here and runs the checks tagged WORKER_TAG before it consumes anything
(fleet.worker.WorkerOptions); a serious one stops it with the check's message.
"""

from __future__ import annotations

from typing import Any

import celery
from django.core import checks

WORKER_TAG = "celery_worker"
# Filled by the starting worker: {"pool": "threads", "autoscale": "4,1" or None}.
worker_options: dict[str, Any] = {}


@checks.register(WORKER_TAG)
def check_worker_pool(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    if not worker_options:
        return errors  # not in a worker
    if worker_options.get("autoscale") and "thread" in str(worker_options.get("pool", "")):
        errors.append(
            checks.Error(
                "--autoscale does not work with the threads pool: it cannot grow, and the "
                "autoscaler crashes the worker a few seconds after start (celery #5333).",
                hint="Drop --autoscale; add capacity with more worker processes (replicas).",
                id="beamclaw.E001",
            )
        )
    if celery.VERSION < (5, 7):
        errors.append(
            checks.Error(
                f"Celery {celery.__version__}: a warm shutdown of the threads pool runs every "
                "prefetched task before exiting before 5.7, so a drain would take whole turns.",
                hint="Install the version pinned in requirements/base.txt.",
                id="beamclaw.E002",
            )
        )
    return errors
