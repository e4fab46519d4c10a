"""What a starting Celery worker does beyond Celery: run its system checks, take its
shard, subscribe to its tenants' queues, keep its registry entry, and hand its turns back
when it stops.

FleetConfig.ready() attaches these to the Celery app. Celery's Django fixup runs
django.setup() when the worker is created (loader.init_worker()), before the worker
builds its blueprint from app.steps["worker"], so the steps added here are in it. The
`--shard` / `--tenants` options are declared in beamclaw.celery: the command line is
parsed before Django is set up.
"""

from __future__ import annotations

import logging
import os
import threading

from celery import Celery, bootsteps, signals
from celery.worker.control import control_command
from django.conf import settings
from django.core.checks import run_checks

from agents.runtime import handover
from beamclaw.celery import tenant_queue

from . import checks, drain, queues, registry
from .registry import draining
from .shards import Shard
from .standby import activate, hold_queues

logger = logging.getLogger(__name__)


class WorkerOptions(bootsteps.Step):
    """At worker start: runs the worker's system checks (fleet.checks), then reads
    `--shard` / `--tenants` (or BEAMCLAW_WORKER_SHARD / _TENANTS) and `--standby`."""

    def __init__(
        self,
        parent,
        shard: str | None = None,
        tenants: str | None = None,
        standby: bool = False,
        **options,
    ):
        pool = parent.pool_cls if isinstance(parent.pool_cls, str) else parent.pool_cls.__module__
        checks.worker_options.update(pool=pool, autoscale=options.get("autoscale"))
        serious = [m for m in run_checks(tags=[checks.WORKER_TAG]) if m.is_serious()]
        if serious:
            raise SystemExit("\n".join(f"{m.id}: {m.msg}\n  HINT: {m.hint}" for m in serious))
        if shard or tenants:
            queues.set_current_shard(Shard.from_options(shard, tenants))
        if standby:
            # Celery applied -Q before building this step, and builds its consumer after.
            hold_queues(parent.app.amqp.queues)
        # The turn loop asks this at each step boundary: a draining worker hands over.
        handover.install(draining.is_set)
        super().__init__(parent, **options)


def attach(app: Celery) -> None:
    """Add the worker's own steps to the Celery app (before a worker is built)."""
    app.steps["worker"].add(WorkerOptions)
    # Each worker's entry in the registry (fleet.registry), renewed while it runs.
    app.steps["worker"].add(registry.Heartbeat)


@signals.celeryd_after_setup.connect
def consume_tenant_queues(sender, instance, conf, **kwargs):
    """A starting worker subscribes to the queues of the tenants its shard owns (a standby
    when it is activated)."""
    if registry.standby.is_set():
        return
    maps = queues.current_maps()
    names = queues.tenant_queues_for(queues.current_shard, maps)
    for queue in names:
        instance.app.amqp.queues.select_add(queue)
    queues.applied_epochs[:] = [m.epoch for m in maps]
    logger.info("%s: consuming %d tenant queue(s)", queues.current_shard, len(names))


@signals.worker_shutting_down.connect
def hand_back_turns(sig=None, how=None, exitcode=None, **kwargs):
    """On SIGTERM, running turns hand themselves back at their next step boundary.

    Another worker continues them from their last saved step, so a worker stops in the
    time of one model call, not of a whole turn. A call still in flight after
    WORKER_SHUTDOWN_GRACE_SECONDS is abandoned: the process exits and the reaper
    re-dispatches the turn (threads cannot be interrupted).
    """
    draining.set()
    grace = settings.WORKER_SHUTDOWN_GRACE_SECONDS
    logger.warning("shutting down: handing running turns back (at most %.0f s)", grace)
    watchdog = threading.Timer(grace, os._exit, args=(1,))
    watchdog.daemon = True
    watchdog.start()


# The two commands below change the worker's queues after their handler has returned, in
# the consumer's loop (call_soon). With RabbitMQ, declaring and consuming a queue waits for
# the broker's answer, and meanwhile py-amqp runs the next control message's handler inside
# this one: a burst of announcements (a thousand new tenants) nested until RecursionError,
# and two nested handlers could consume one queue twice. Nobody reads their replies.


@control_command(args=[("slug", str), ("dedicated", bool)], signature="<slug> <dedicated>")
def consume_tenant(state, slug: str, dedicated: bool = False) -> dict:
    """Worker side of announce_tenant_queue: start consuming if our shard owns the tenant."""
    state.consumer.call_soon(_consume_tenant, state.consumer, slug, dedicated)
    return {"ok": f"will consume {tenant_queue(slug)} if {queues.current_shard} owns it"}


def _consume_tenant(consumer, slug: str, dedicated: bool) -> None:
    # A drain began since the announcement, or a standby: it takes its queues when activated.
    if draining.is_set() or registry.standby.is_set():
        return
    if queues.current_shard.owns(slug, dedicated=dedicated, maps=queues.current_maps()):
        consumer.add_task_queue(tenant_queue(slug))


@control_command()
def reconcile_tenant_queues(state) -> dict:
    """Reconcile now (the worker also does it every QUEUE_RECONCILE_SECONDS by itself)."""
    state.consumer.call_soon(_reconcile_now, state.consumer)
    return {"ok": "reconciling"}


def _reconcile_now(consumer) -> None:
    if draining.is_set() or registry.standby.is_set():
        return
    queues.reconcile(consumer)
    registry.beat_now()  # `reshard` waits for the registry to show the new epochs


@control_command()
def drain_worker(state) -> dict:
    """`manage.py drain`: see fleet.drain.start_draining. The worker leaves a mark, so a
    supervisor (`manage.py workers`) knows its exit was asked for and does not start it
    again."""
    drain.mark_drained(state.hostname)
    stopped = drain.start_draining(state.consumer)
    return {"ok": f"draining: stopped consuming {len(stopped)} queue(s)"}


@control_command()
def activate_worker(state) -> dict:
    """A supervisor turns this warm standby on (fleet.standby): it consumes its queues
    from the consumer's next loop, without the seconds a new process takes to start."""
    if not registry.standby.is_set():
        return {"ok": "already consuming"}
    state.consumer.call_soon(activate, state.consumer)
    return {"ok": "activating"}
