"""Every Redis key belongs to one installation: a fresh database starts from nothing,
whatever an older installation left in the same Redis database."""

import asyncio
import io
import os
import subprocess
import sys

import pytest
import redis
from django.core.management import call_command

from beamclaw.installation import installation_id
from beamclaw.models import Installation
from beamclaw.redis import get_redis, key
from tenants import limits
from tests.conftest import TEST_REDIS_URL
from tests.support import ROOT

pytestmark = pytest.mark.django_db


def test_a_fresh_databases_tenant_sees_none_of_another_installations_usage(settings, acme):
    # Another installation on this Redis database spent 1,373,744 tokens today with its
    # tenant of the same id.
    settings.INSTALLATION_ID = "an-older-install"
    limits.settle(limits.admit_call(acme.tenant, estimate=1_000), 1_373_744)
    assert limits.current_usage(acme.tenant)["tokens_today"] == 1_373_744

    settings.INSTALLATION_ID = ""  # this installation: the id its database holds
    usage = acme.client.get("/api/v1/tenant").json()["usage"]

    assert (usage["tokens_today"], usage["tokens_this_month"]) == (0, 0)


def test_the_installation_id_comes_from_the_database_and_differs_per_database(settings):
    settings.INSTALLATION_ID = ""
    first = installation_id()
    assert first == Installation.objects.get().key
    assert key("t", 1, "rpm") == f"bc:{first}:t:1:rpm"

    # A new database (its row created anew) is another installation.
    Installation.objects.all().delete()
    settings.INSTALLATION_ID = ""  # forget the cached id, as a new process would
    assert installation_id() not in ("", first)


def test_clear_redis_keys_deletes_this_installations_keys_only(settings):
    client = get_redis()
    settings.INSTALLATION_ID = "other"
    client.set(key("t", 1, "tokens", "day", "20261203"), 5)
    settings.INSTALLATION_ID = "mine"
    client.set(key("t", 1, "tokens", "day", "20261203"), 7)
    client.set(key("workers", "w1@host"), "{}")

    call_command("clear_redis_keys", stdout=io.StringIO())

    assert client.get("bc:other:t:1:tokens:day:20261203") == "5"
    assert list(client.scan_iter("bc:mine:*")) == []


def _without_test_overrides(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in DEV_ENV_OVERRIDES}
    return dict(env, **extra)


# What the suite sets for its own processes; `make run` and `make clean` see none of it.
DEV_ENV_OVERRIDES = {
    "BEAMCLAW_INSTALLATION_ID",
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "CELERY_RESULT_BACKEND",
    "BEAMCLAW_VAR_DIR",
}


def test_make_clean_deletes_its_keys_in_a_shared_redis_and_var(tmp_path):
    var = tmp_path / "var"
    env = _without_test_overrides(BEAMCLAW_VAR_DIR=str(var), REDIS_URL=TEST_REDIS_URL)
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    shown = subprocess.run(
        [*manage, "shell", "-c", "from beamclaw.redis import key; print(key('t', 1, 'rpm'))"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()[-1]
    client = redis.Redis.from_url(TEST_REDIS_URL, decode_responses=True)
    client.set(shown, 1)
    client.set("bc:someone-else:t:1:rpm", 1)

    clean = [sys.executable, "scripts/dev.py", "clean"]
    subprocess.run(clean, cwd=ROOT, env=env, check=True, capture_output=True)

    assert client.get(shown) is None
    assert client.get("bc:someone-else:t:1:rpm") == "1"
    assert not var.exists()


@pytest.mark.django_db(transaction=True)
def test_the_installation_id_is_read_from_an_async_view_too(settings):
    # The first key a web process names may be in an async view (an event stream), where
    # Django refuses database calls on the event loop's thread.
    settings.INSTALLATION_ID = ""
    expected = installation_id()  # the row, created if a flush removed it
    settings.INSTALLATION_ID = ""  # forget it again: the async call reads it first

    async def first_key() -> str:
        return key("t", 1, "rpm")

    assert asyncio.run(first_key()) == f"bc:{expected}:t:1:rpm"
