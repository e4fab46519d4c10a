"""BeamClaw on RabbitMQ (CELERY_BROKER_URL=amqp://...) instead of Redis, the default broker.

A real web server and worker answer a turn through RabbitMQ; a worker takes a burst of
new tenants; a message sent while RabbitMQ is down is stored and flagged `delayed`.

The tests that need RabbitMQ are the only ones the suite may skip, and only when nothing
listens at TEST_AMQP_URL (127.0.0.1:5672 by default): RabbitMQ is an optional broker, and
machines without it still run everything else. Each run is isolated on the shared vhost:
its tenants are dedicated (other workers on the vhost ignore their announcements), its
worker consumes only them and a default queue named for the run, and its queues are
deleted at the end."""

from __future__ import annotations

import os
import socket
import uuid
from urllib.parse import urlsplit

import httpx
import pytest
from kombu import Connection
from kombu.pidbox import Mailbox

from beamclaw.celery import tenant_queue
from fleet.worker_command import worker_command
from tenants.models import Tenant
from tenants.services import create_tenant, issue_api_key

from .conftest import TEST_WORKER_LOG_LEVEL
from .support import Process, free_port, make_agent, start_web, wait_until

AMQP_URL = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")

pytestmark = pytest.mark.django_db(transaction=True)


def rabbitmq_listens(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port or 5672), timeout=1):
            return True
    except OSError:
        return False


def delete_queues(names: list[str]) -> None:
    with Connection(AMQP_URL, connect_timeout=3) as conn:
        channel = conn.channel()
        for name in names:
            channel.queue_delete(name)
            channel.exchange_delete(name)


def consumers(rabbitmq: Connection, queue: str) -> int:
    """How many consumers RabbitMQ counts on `queue` (0 if it does not exist)."""
    with rabbitmq.channel() as channel:
        try:
            return channel.queue_declare(queue, passive=True).consumer_count
        except rabbitmq.channel_errors:
            return 0


class RabbitRun:
    """One test's names on the shared vhost, its worker, and the queues to delete after."""

    def __init__(self, platform_env: dict[str, str], log_dir):
        self.id = uuid.uuid4().hex[:10]
        self.env = {**platform_env, "CELERY_BROKER_URL": AMQP_URL}
        self.log_dir = log_dir
        # Not through this process's Celery app: it stays on the test Redis (and Celery
        # takes CELERY_BROKER_URL from the environment before anything given to it).
        self.rabbitmq = Connection(AMQP_URL, connect_timeout=3)
        self.default_queue = f"beamclaw-test-{self.id}"
        self.queues = [self.default_queue]
        self.processes: list[Process] = []

    def start_worker(self, tenants: list[str]) -> Process:
        """A worker dedicated to these tenants (so other runs' announcements pass it by),
        consuming a default queue of its own instead of `beamclaw`."""
        argv = worker_command(
            f"amqp-{self.id}@%h",
            log_level=TEST_WORKER_LOG_LEVEL,
            default_queue=self.default_queue,
            tenants=",".join(tenants),
        )
        worker = Process(f"worker-amqp-{self.id}", argv, self.env, self.log_dir)
        self.processes.append(worker)

        def consuming() -> bool:
            assert worker.alive(), f"worker exited:\n{worker.log()[-3000:]}"
            return consumers(self.rabbitmq, self.default_queue) == 1

        wait_until(consuming, timeout=60, message=f"the worker to consume {self.default_queue}")
        assert "transport:   amqp://" in worker.log()
        return worker

    def close(self) -> None:
        for process in self.processes:
            process.stop()
        self.rabbitmq.close()
        delete_queues(self.queues)


@pytest.fixture
def rabbit_run(platform_env, log_dir):
    if not rabbitmq_listens(AMQP_URL):
        pytest.skip(f"optional broker: nothing listens at {AMQP_URL}")
    run = RabbitRun(platform_env, log_dir)
    yield run
    run.close()


def test_a_worker_on_rabbitmq_answers_a_turn_end_to_end(rabbit_run, model):
    slug = f"amqp-{rabbit_run.id}"
    rabbit_run.queues.append(tenant_queue(slug))
    tenant = create_tenant(slug=slug, name="Rabbit", dedicated_workers=True)
    key = issue_api_key(tenant=tenant, name="test").secret
    make_agent(tenant, model)
    rabbit_run.start_worker([slug])
    web, base_url = start_web(rabbit_run.env, rabbit_run.log_dir, f"web-amqp-{rabbit_run.id}")
    rabbit_run.processes.append(web)
    wait_until(
        lambda: consumers(rabbit_run.rabbitmq, tenant_queue(slug)) == 1,
        message=f"the worker to consume {tenant_queue(slug)}",
    )

    ready = httpx.get(f"{base_url}/readyz", timeout=10)
    assert ready.status_code == 200, ready.json()
    response = httpx.post(
        f"{base_url}/api/v1/sessions/agent:ops:main/messages",
        json={"content": "hello rabbit", "wait": 30},
        headers={"Authorization": f"Bearer {key}"},
        timeout=40,
    )

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["delayed"] is False
    assert body["turn"]["status"] == "succeeded"
    assert body["turn"]["reply"] == "echo: hello rabbit"
    # The trigger went through the tenant's RabbitMQ queue, now empty.
    with rabbit_run.rabbitmq.channel() as channel:
        declared = channel.queue_declare(tenant_queue(slug), passive=True)
    assert declared.message_count == 0


def test_a_burst_of_new_tenants_reaches_a_rabbitmq_worker_once_each(rabbit_run):
    """With RabbitMQ, consuming a queue waits for the broker, and py-amqp runs the next
    control message meanwhile: handling each announcement inside the previous one nested
    until RecursionError (seen when the bench created 1,000 tenants)."""
    slugs = [f"amqp-{rabbit_run.id}-{index:03d}" for index in range(200)]
    rabbit_run.queues += [tenant_queue(slug) for slug in slugs]
    worker = rabbit_run.start_worker(slugs)
    # Created after the worker started, so only the announcements tell it.
    Tenant.objects.bulk_create(
        Tenant(slug=slug, name=slug, dedicated_workers=True) for slug in slugs
    )
    mailbox = Mailbox("celery", type="fanout", accept=["json"], serializer="json")
    node = mailbox(rabbit_run.rabbitmq)
    for slug in slugs:
        node._broadcast("consume_tenant", {"slug": slug, "dedicated": True})

    def all_consumed() -> bool:
        assert worker.alive(), f"worker exited:\n{worker.log()[-3000:]}"
        return all(consumers(rabbit_run.rabbitmq, tenant_queue(slug)) for slug in slugs)

    wait_until(all_consumed, timeout=60, message="the worker to consume every new queue")
    counts = {slug: consumers(rabbit_run.rabbitmq, tenant_queue(slug)) for slug in slugs}
    assert {slug: n for slug, n in counts.items() if n != 1} == {}
    assert "RecursionError" not in worker.log()


def test_a_message_is_accepted_and_delayed_while_rabbitmq_is_down(platform_env, log_dir, model):
    """No RabbitMQ needed: the broker URL names a port where nothing listens."""
    tenant = create_tenant(slug="amqp-down", name="Rabbit down")
    key = issue_api_key(tenant=tenant, name="test").secret
    make_agent(tenant, model)
    down = f"amqp://guest:guest@127.0.0.1:{free_port()}//"
    web, base_url = start_web({**platform_env, "CELERY_BROKER_URL": down}, log_dir, "web-amqp-down")
    try:
        response = httpx.post(
            f"{base_url}/api/v1/sessions/agent:ops:main/messages",
            json={"content": "anyone there?", "wait": 5},
            headers={"Authorization": f"Bearer {key}"},
            timeout=20,
        )
        ready = httpx.get(f"{base_url}/readyz", timeout=20)
    finally:
        web.stop()

    assert response.status_code == 202, response.json()
    assert response.json()["delayed"] is True
    assert response.json()["turn"]["status"] == "queued"
    assert ready.status_code == 503
    checks = ready.json()["error"]["details"]["checks"]
    assert checks["broker"].startswith("error"), checks
    assert checks["redis"] == "ok" and checks["database"] == "ok"
