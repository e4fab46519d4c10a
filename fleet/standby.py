"""Warm standby workers: started and ready, consuming nothing, until a supervisor turns
one on.

A new worker process takes seconds to start (Django and Celery imports, on cores the
surge keeps busy); activating a standby takes one control command. A standby
(`celery worker --standby`) drops every queue it was started with before its consumer
starts, so it polls no queue at all: with Redis no BRPOP is in flight, and the one its
queues need is sent in the same turn of the event loop as `activate_worker` adds them
(an idle BRPOP would otherwise hold them back up to its 1 s timeout). The tenant queues
it will take are listed while it waits (fleet.queues.prepare_standby), so activating
needs no database query; a reconcile right after catches up with any change. Until then
it is listed as `standby` in the registry, and capacity, drains and reshards leave it
alone.
"""

from __future__ import annotations

import logging
import time

from beamclaw.celery import app

from . import queues, registry
from .registry import draining, standby

log = logging.getLogger(__name__)

# The queues given with -Q, held back while this worker is a standby.
held_queues: list[str] = []


def hold_queues(amqp_queues) -> None:
    """At worker start (before the consumer exists): consume nothing, remember what."""
    registry.standby.set()
    held_queues[:] = list(amqp_queues.consume_from)
    amqp_queues.deselect(held_queues)


def activate(consumer) -> None:
    """Consume the held queues and this shard's tenant queues, and say so in the registry.
    Runs in the consumer's thread (the `activate_worker` control command)."""
    if draining.is_set() or not standby.is_set():
        return
    began = time.monotonic()
    standby.clear()
    registry.announce_next_task.set()
    for name in [*held_queues, *queues.standby_queues]:
        consumer.add_task_queue(name)
    registry.beat_now()
    # Next turn of the loop, once the queues are polled: what changed since the list.
    consumer.call_soon(_catch_up, consumer)
    log.warning(
        "standby activated: consuming %s and %d tenant queue(s) (%.3f s)",
        ", ".join(held_queues),
        len(queues.standby_queues),
        time.monotonic() - began,
    )


def _catch_up(consumer) -> None:
    if not draining.is_set():
        queues.reconcile(consumer)
        registry.beat_now()  # with the map epochs it follows now


def answers(hostname: str, *, timeout: float = 1.0) -> bool:
    """Whether the standby `hostname` takes control commands (and the connections a
    command needs are open on both sides before the surge)."""
    return bool(app.control.ping(destination=[hostname], timeout=timeout))


def send_activate(hostname: str, *, timeout: float = 1.0) -> bool:
    """Ask the standby `hostname` to start consuming; whether it answered."""
    replies = app.control.broadcast(
        "activate_worker", destination=[hostname], reply=True, timeout=timeout, limit=1
    )
    return any(hostname in reply for reply in replies or [])
