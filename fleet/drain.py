"""Draining a worker: it stops consuming its queues, each running turn finishes the model
or tool call it is in, saves the step and hands its session back (it continues on another
worker from that step), and the worker exits once nothing is in flight.

From inside (the `drain_worker` control command in fleet.worker, or SIGTERM) and from the
outside (`manage.py drain`, the supervisor's scale-down), which reads the registry.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from dataclasses import dataclass

from redis import RedisError

from agents.models import FINAL_STATUSES, Turn, TurnStatus
from agents.runtime.lease import lease_key
from beamclaw.celery import app
from beamclaw.redis import get_redis, key

from .registry import beat_now, draining, get_worker

log = logging.getLogger(__name__)

# How long the mark of a drained worker waits for its supervisor to see the exit.
DRAINED_MARK_SECONDS = 3600


def drained_key(hostname: str) -> str:
    # Outside the registry's prefix, so list_workers() never reads a mark as an entry.
    return key("drained-workers", hostname)


def start_draining(consumer) -> list[str]:
    """Stop consuming every queue, hand running turns back at their next step boundary,
    and stop the worker once they have (a warm shutdown, as on SIGTERM)."""
    draining.set()
    beat_now()  # the registry says "draining" before the worker stops answering
    queues = [queue.name for queue in consumer.task_consumer.queues]
    for name in queues:
        consumer.cancel_task_queue(name)
    log.warning("draining: stopped consuming %d queue(s); stopping when idle", len(queues))
    # SIGTERM is Celery's warm shutdown: running tasks end (at their next step boundary,
    # as `draining` is set) and reserved messages go back to their queues.
    threading.Timer(0.1, os.kill, args=(os.getpid(), signal.SIGTERM)).start()
    return queues


def mark_drained(hostname: str) -> None:
    try:
        get_redis().set(drained_key(hostname), 1, ex=DRAINED_MARK_SECONDS)
    except RedisError:  # its supervisor will take the exit for a crash and restart it
        log.warning("could not mark %s as drained", hostname)


def take_drained_mark(hostname: str) -> bool:
    """Whether `hostname` exited because it was drained; forgets the mark."""
    pipe = get_redis().pipeline()
    pipe.get(drained_key(hostname))
    pipe.delete(drained_key(hostname))
    return pipe.execute()[0] is not None


# --- Draining from the outside (manage.py drain) -------------------------------------


@dataclass
class DrainTarget:
    hostname: str
    turn_ids: list[int]  # the turns it was running when the drain began


@dataclass
class TurnFate:
    turn_id: int
    session_key: str
    outcome: str  # "finished", "handed over", "left to the reaper"
    detail: str


def pick_targets(entries: list[dict], *, hostname: str | None, shard: int | None) -> list[dict]:
    """The registry entries a drain names: one worker, a hash shard's workers, or all."""
    if hostname is not None:
        return [
            e
            for e in entries
            if e["hostname"] == hostname or e["hostname"].split("@")[0] == hostname
        ]
    if shard is not None:
        return [e for e in entries if e["shard"].startswith(f"shard {shard}/")]
    return entries


def running_turns(entry: dict) -> list[int]:
    """The turns running in the sessions a worker's entry lists."""
    turn_ids = [r["turn_id"] for r in entry.get("running", []) if "turn_id" in r]
    session_ids = [r["session_id"] for r in entry.get("running", []) if "session_id" in r]
    sessions = set(session_ids) | set(
        Turn.objects.filter(pk__in=turn_ids).values_list("session_id", flat=True)
    )
    return list(
        Turn.objects.filter(session_id__in=sessions, status=TurnStatus.RUNNING)
        .order_by("id")
        .values_list("pk", flat=True)
    )


def send_drain(hostnames: list[str], *, timeout: float = 2.0) -> dict[str, str]:
    """Ask these workers to drain; returns each one's answer (missing: it did not answer)."""
    replies = app.control.broadcast(
        "drain_worker", destination=hostnames, reply=True, timeout=timeout, limit=len(hostnames)
    )
    answers: dict[str, str] = {}
    for reply in replies or []:
        for name, body in reply.items():
            answers[name] = body.get("ok") or body.get("error", "")
    return answers


def worker_gone(hostname: str) -> bool:
    if get_worker(hostname) is not None:
        return False
    return not app.control.ping(destination=[hostname], timeout=0.5)


def turn_fates(turn_ids: list[int]) -> list[TurnFate]:
    """What became of turns a drained worker was running."""
    client = get_redis()
    fates = []
    for turn in Turn.objects.filter(pk__in=turn_ids).select_related("session").order_by("id"):
        key_ = turn.session.key
        if turn.status in FINAL_STATUSES:
            fates.append(TurnFate(turn.pk, key_, "finished", turn.status))
        elif turn.status == TurnStatus.QUEUED:
            fates.append(
                TurnFate(turn.pk, key_, "handed over", f"queued at step {turn.iterations}")
            )
        elif client.exists(lease_key(turn.tenant_id, turn.session_id)):
            fates.append(
                TurnFate(turn.pk, key_, "handed over", f"running elsewhere, step {turn.iterations}")
            )
        else:
            fates.append(
                TurnFate(turn.pk, key_, "left to the reaper", f"{turn.status}, no lease holder")
            )
    return fates
