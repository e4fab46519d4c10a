"""The Celery app: Redis broker (or RabbitMQ), JSON, early ack, prefetch 1, one queue per
tenant.

A task that carries `tenant=<slug>` in its kwargs is routed to `tenant.<slug>`, so one
tenant's backlog never sits in front of another's. Everything else (beat jobs, ops
tasks) goes to the default `beamclaw` queue.
"""

from __future__ import annotations

import os

import click
from celery import Celery

from beamclaw.running_redis import use_running_redis

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "beamclaw.settings")
use_running_redis()  # `celery -A beamclaw ...` beside a running `make run` joins its Redis


class InstallationCelery(Celery):
    """Celery whose Redis broker keys start with this installation's prefix.

    kombu's `global_keyprefix` goes in when a connection is made, not at configuration
    time: the prefix comes from the database, which is not ready when this module loads.
    """

    def _connection(self, url, transport_options=None, **kwargs):
        if not is_amqp(url or self.conf.broker_url):
            # Not at module level: `beamclaw` imports this module before settings load.
            from beamclaw.redis import broker_key_prefix

            transport_options = {
                "global_keyprefix": broker_key_prefix(),
                **(transport_options or {}),
            }
        return super()._connection(url, transport_options=transport_options, **kwargs)


app = InstallationCelery("beamclaw")
app.config_from_object("django.conf:settings", namespace="CELERY")

TENANT_QUEUE_PREFIX = "tenant."


def tenant_queue(slug: str) -> str:
    return f"{TENANT_QUEUE_PREFIX}{slug}"


def is_amqp(url: str | None) -> bool:
    """A RabbitMQ broker URL (CELERY_BROKER_URL=amqp://...); anything else is Redis."""
    return (url or "").startswith(("amqp://", "amqps://", "pyamqp://"))


def broker_settings(url: str | None) -> dict:
    """Settings to change when the broker is RabbitMQ; none for Redis.

    `broker_transport_options` below are Redis's (one key per queue, visibility timeout):
    RabbitMQ takes neither, as a queue is one queue whatever its priorities and a dead
    consumer's unacked messages come back at once.
    """
    if is_amqp(url):
        return {"broker_transport_options": {}}
    return {}


def route_by_tenant(name, args, kwargs, options, task=None, **kw):
    """Celery router: tasks that name their tenant go to that tenant's queue."""
    tenant = (kwargs or {}).get("tenant")
    if tenant:
        return {"queue": tenant_queue(tenant)}
    return None


app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_default_queue="beamclaw",
    task_routes=(route_by_tenant,),
    task_create_missing_queues=True,
    # The Turn row is the truth and a message is only a trigger: ack when a thread
    # starts the task (early ack) and let leases + the reaper cover a dead worker.
    # acks_late + Redis visibility timeout re-delivers long tasks (celery #5935).
    task_acks_late=False,
    worker_prefetch_multiplier=1,
    worker_pool="threads",
    # One Redis key per queue: BRPOP cost grows with keys, and priorities multiply them.
    # visibility_timeout: a message a killed worker had reserved (not started) is put back
    # after this long (agents.runtime.reaper); its turn was re-dispatched long before.
    broker_transport_options={
        "priority_steps": [0],
        "visibility_timeout": int(os.environ.get("CELERY_VISIBILITY_TIMEOUT", "900")),
    },
    broker_connection_retry_on_startup=True,
    task_ignore_result=True,
    result_expires=3600,
    worker_send_task_events=os.environ.get("CELERY_TASK_EVENTS", "1") == "1",
    task_send_sent_event=os.environ.get("CELERY_TASK_EVENTS", "1") == "1",
    worker_hijack_root_logger=False,
    beat_scheduler="django_celery_beat.schedulers:DatabaseScheduler",
    # Fail fast when the broker is down: the turn row is committed and the reaper sends
    # its trigger later; an API request must not hang on retries.
    task_publish_retry_policy={
        "max_retries": 1,
        "interval_start": 0,
        "interval_step": 0.2,
        "interval_max": 0.2,
    },
    broker_connection_timeout=2,
)
app.autodiscover_tasks()


@app.on_after_configure.connect
def _apply_broker_settings(sender, source, **kwargs):
    """Once the broker URL is known (settings, or CELERY_BROKER_URL first)."""
    source.update(broker_settings(source.broker_url))


# Declared here, not in fleet: the command line is parsed before Django is set up. The
# worker step that reads them is fleet.worker.WorkerOptions.
app.user_options["worker"].add(
    click.Option(["--shard"], default=None, help="consume tenant shard k of N, e.g. 0/4")
)
app.user_options["worker"].add(
    click.Option(["--tenants"], default=None, help="dedicated worker: these tenant slugs only")
)
app.user_options["worker"].add(
    click.Option(
        ["--standby"],
        is_flag=True,
        default=False,
        help="warm standby: start, consume no queue until the activate_worker command",
    )
)


@app.task(name="beamclaw.ping", ignore_result=False)
def ping(tenant: str | None = None) -> str:
    """A no-op round trip: readiness probes, routing tests and the benchmark floor."""
    return "pong"
