"""Shared fixtures: a private Redis database, real worker and web processes, API clients.

Integration tests are `transaction=True` so the worker and web processes, which connect
to the same test database, see what the test wrote.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
from django.conf import settings
from django.test import override_settings
from rest_framework.test import APIClient

from agents.runtime.lease import keeper
from beamclaw.celery import app as celery_app
from beamclaw.redis import broker_key_prefix
from fleet.worker_command import worker_command
from testing.fake_chat import FakeChannelApi
from testing.fake_model import FakeModelServer

from .factories import ApiKeyFactory, TenantFactory
from .support import (
    Process,
    make_agent,
    python,
    start_web,
    test_database_url,
    wait_until,
)


def _test_redis_url() -> str:
    """TEST_REDIS_URL, else REDIS_URL's server with database 15: never a live install's data."""
    if url := os.environ.get("TEST_REDIS_URL"):
        return url
    parts = urlsplit(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    return urlunsplit(parts._replace(path="/15"))


TEST_REDIS_URL = _test_redis_url()
TEST_INSTALLATION_ID = "test"


def _on_postgres() -> bool:
    return settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"


def pytest_collection_modifyitems(config, items):
    """`requires_postgres` tests are skipped on SQLite (the `make test` default)."""
    if _on_postgres():
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL (set DATABASE_URL)")
    for item in items:
        if item.get_closest_marker("requires_postgres"):
            item.add_marker(skip)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI on PostgreSQL (.ci/run sets CI=true), a `requires_postgres` test that is
    skipped fails: there is no other run where it would prove anything."""
    report = yield
    if (
        report.skipped
        and item.get_closest_marker("requires_postgres")
        and os.environ.get("CI") == "true"
        and _on_postgres()
    ):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped in CI on PostgreSQL, where it must run: {reason}"
    return report


@pytest.fixture(scope="session", autouse=True)
def _private_redis():
    """Point the platform at the test Redis database and start it empty."""
    # A fixed installation id: the installation row is flushed with the rest of the test
    # database, and the suite's child processes must name keys as the tests do.
    override = override_settings(REDIS_URL=TEST_REDIS_URL, INSTALLATION_ID=TEST_INSTALLATION_ID)
    override.enable()
    # Celery reads these from the environment before its configuration.
    os.environ.update(
        CELERY_BROKER_URL=TEST_REDIS_URL,
        CELERY_RESULT_BACKEND=TEST_REDIS_URL,
        BEAMCLAW_INSTALLATION_ID=TEST_INSTALLATION_ID,
    )
    celery_app.conf.broker_url = TEST_REDIS_URL
    celery_app.conf.result_backend = TEST_REDIS_URL
    redis.Redis.from_url(TEST_REDIS_URL).flushdb()
    yield
    override.disable()


@pytest.fixture(autouse=True)
def _fast_provider_retries(settings):
    settings.PROVIDER_BACKOFF_BASE = 0.01


@pytest.fixture(autouse=True)
def _tenant_base_urls_may_be_loopback(settings):
    """Tenants' model servers here are on loopback, which the operator must allow."""
    settings.PROVIDER_BASE_URL_ALLOW_PRIVATE = True


@pytest.fixture(autouse=True)
def _forget_platform_keys():
    """Drop BeamClaw's own Redis keys after each test (ids repeat after a rollback).

    Celery's keys stay: the session's worker relies on its queue bindings.
    """
    yield
    client = redis.Redis.from_url(TEST_REDIS_URL)
    broker = broker_key_prefix().encode()
    keys = [
        name
        for name in client.scan_iter(f"{settings.REDIS_KEY_PREFIX}:*", count=1000)
        if not name.startswith(broker)
    ]
    if keys:
        client.delete(*keys)


@pytest.fixture(autouse=True)
def _no_session_lease_left_held():
    """A test releases every session lease it takes in this process.

    This process's keeper thread renews a lease until it is released, and takes back one
    whose key vanished (as after a Redis restart), so the key clean-up above cannot end
    it: a lease left held keeps its session for the rest of the run. The ids come back
    (on SQLite a rolled-back test's tenant and session are 1 again, and so are
    test_readme's), and a later test's turns on that session would stay queued.
    """
    yield
    left = keeper.held()
    for lease in left:
        lease.release()
    if left:
        pytest.fail(f"the test left session lease(s) held: {', '.join(x.key for x in left)}")


@pytest.fixture(scope="session")
def log_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="beamclaw-test-logs-"))


PLATFORM_OPENAI_KEY = "sk-platform-only"


@pytest.fixture(scope="session")
def platform_model():
    """The platform's own OpenAI-compatible endpoint (the workers' OPENAI_BASE_URL, with
    PLATFORM_OPENAI_KEY), apart from the servers tenants point at."""
    server = FakeModelServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def platform_env(
    django_db_setup, django_db_blocker, channel_api_server, platform_model
) -> dict[str, str]:
    """Environment for child processes: the test database and the test Redis."""
    with django_db_blocker.unblock():
        database_url = test_database_url()
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url,
        REDIS_URL=TEST_REDIS_URL,
        CELERY_BROKER_URL=TEST_REDIS_URL,
        CELERY_RESULT_BACKEND=TEST_REDIS_URL,
        BEAMCLAW_INSTALLATION_ID=TEST_INSTALLATION_ID,
        PROVIDER_BACKOFF_BASE="0.01",
        CELERY_TASK_EVENTS="0",
        SECRET_KEY=settings.SECRET_KEY,
        DEBUG="1",
        LOG_LEVEL="WARNING",
    )
    # Workers post channel replies to the fake Slack/Discord API (tests/agents/channels).
    env.update(
        SLACK_API_BASE_URL=channel_api_server.slack_url,
        DISCORD_API_BASE_URL=channel_api_server.discord_url,
        CHANNEL_DELIVERY_BACKOFF_BASE="0.2",
    )
    env.update(
        OPENAI_API_KEY=PLATFORM_OPENAI_KEY,
        OPENAI_BASE_URL=platform_model.url_openai,
        PROVIDER_BASE_URL_ALLOW_PRIVATE="1",  # tenants' fake model servers are on loopback
    )
    return env


TEST_WORKER_LOG_LEVEL = "warning"


def start_worker(
    env: dict[str, str], log_dir: Path, name: str = "worker", extra: list[str] | None = None
) -> Process:
    """A real worker process; returns once it answers a ping."""
    worker = Process(
        name,
        worker_command(f"{name}@%h", log_level=TEST_WORKER_LOG_LEVEL, extra_args=extra or ()),
        env,
        log_dir,
    )
    hostname = f"{name}@{os.uname().nodename}"

    def answers() -> bool:
        assert worker.alive(), f"worker exited:\n{worker.log()[-3000:]}"
        return bool(celery_app.control.ping(destination=[hostname], timeout=0.5))

    wait_until(answers, timeout=60, message=f"{name} to answer ping")
    return worker


@pytest.fixture(scope="session")
def worker(platform_env, log_dir):
    """One real Celery worker process (threads pool) for the whole session."""
    process = start_worker(platform_env, log_dir)
    yield process
    process.stop()


@pytest.fixture(scope="session")
def web(platform_env, log_dir) -> str:
    """A real uvicorn server running the project (for SSE and `wait`); yields its base URL."""
    process, base_url = start_web(platform_env, log_dir)
    yield base_url
    process.stop()


@pytest.fixture(scope="session")
def fake_model():
    """The scripted model server (OpenAI and Anthropic wire formats) on loopback."""
    server = FakeModelServer().start()
    yield server
    server.stop()


@pytest.fixture
def model(fake_model):
    fake_model.reset()
    return fake_model


class TenantFixture:
    def __init__(self, slug: str):
        self.tenant = TenantFactory(slug=slug, name=slug.title())
        self.key = ApiKeyFactory(tenant=self.tenant, name="test").secret
        self.client = APIClient()
        self.client.credentials(HTTP_AUTHORIZATION=f"Bearer {self.key}")

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@pytest.fixture
def acme(db) -> TenantFixture:
    return TenantFixture("acme")


@pytest.fixture
def globex(db) -> TenantFixture:
    return TenantFixture("globex")


@pytest.fixture
def agent(acme, model):
    """Agent `ops` of tenant acme, on the fake model server's OpenAI endpoint."""
    return make_agent(acme.tenant, model)


BEAT_ARGS = [
    "-m",
    "celery",
    "-A",
    "beamclaw",
    "beat",
    "-S",
    "django_celery_beat.schedulers:DatabaseScheduler",
    # Look for schedule changes every second (DatabaseScheduler's default is 5 s).
    "--max-interval",
    "1",
    "-l",
    "warning",
]


def start_beat(env: dict[str, str], log_dir: Path, name: str = "beat") -> Process:
    """A real celery-beat process; returns once it has written the platform's schedule."""
    from django_celery_beat.models import PeriodicTask

    beat = Process(name, python(*BEAT_ARGS), env, log_dir)
    platform_entries = list(settings.CELERY_BEAT_SCHEDULE)

    def loaded() -> bool:
        assert beat.alive(), f"beat exited:\n{beat.log()[-3000:]}"
        return PeriodicTask.objects.filter(name__in=platform_entries).exists()

    wait_until(loaded, timeout=30, message=f"{name} to load its schedule")
    return beat


@pytest.fixture(scope="session")
def channel_api_server():
    """The fake Slack Web API and Discord API on loopback (testing.fake_chat)."""
    server = FakeChannelApi().start()
    yield server
    server.stop()


@pytest.fixture
def hanging_dns(monkeypatch):
    """Every DNS lookup in this process hangs until the test ends (a resolver that
    never answers)."""
    import threading

    from beamclaw import outbound

    release = threading.Event()
    monkeypatch.setattr(outbound, "lookup", lambda host: release.wait(60) and [])
    yield
    release.set()
