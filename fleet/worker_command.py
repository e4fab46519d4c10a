"""The command line of one Celery worker process, as the platform runs it.

Used by the supervisor (`manage.py workers`), `make worker`, the tests and the bench, so
every worker they start is started the same way. Imports nothing of Django: scripts/dev.py
uses it without loading the settings.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

# Threads, not processes: a turn waits on the network most of the time. The default
# queue carries the beat and ops tasks; tenant queues are added by the worker itself.
DEFAULT_QUEUE = "beamclaw"
DEFAULT_CONCURRENCY = 8


def worker_command(
    node_name: str,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    log_level: str = "info",
    default_queue: str = DEFAULT_QUEUE,
    shard: str | None = None,
    tenants: str | None = None,
    task_events: bool = False,
    standby: bool = False,
    extra_args: Sequence[str] = (),
    python: str = sys.executable,
) -> list[str]:
    """argv of a worker named `node_name` (e.g. `worker1@%h`): the threads pool, without
    gossip or mingle, consuming `--shard k/N` or `--tenants a,b` if given (else every
    tenant's queue), or nothing until activated if `standby` (fleet.standby), with
    `extra_args` last."""
    argv = [
        python,
        "-m",
        "celery",
        "-A",
        "beamclaw",
        "worker",
        "-P",
        "threads",
        "-c",
        str(concurrency),
        "-Q",
        default_queue,
    ]
    if task_events:
        argv.append("-E")
    argv += ["--without-gossip", "--without-mingle", "-n", node_name, "-l", log_level]
    if shard:
        argv += ["--shard", shard]
    if tenants:
        argv += ["--tenants", tenants]
    if standby:
        argv.append("--standby")
    return argv + list(extra_args)
