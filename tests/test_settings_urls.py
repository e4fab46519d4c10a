"""A Redis or broker URL that is empty or malformed stops a process at start, with one
line saying so, before anything is queued; manage.py finds `make run`'s private Redis."""

import subprocess
import sys

import pytest

from agents.models import Turn
from tests.conftest import TEST_REDIS_URL
from tests.support import ROOT, python


def run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "name, value",
    [
        ("REDIS_URL", ""),
        ("REDIS_URL", "127.0.0.1:6379"),
        ("CELERY_BROKER_URL", ""),
        ("CELERY_BROKER_URL", "localhost"),
    ],
)
def test_a_bad_redis_or_broker_url_stops_chat_before_it_queues_a_turn(
    platform_env, agent, name, value
):
    env = dict(platform_env, **{name: value})
    chat = ["manage.py", "chat", "agent:ops:main", "hello", "--tenant", "acme"]

    result = run(python(*chat), env)

    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]  # one line
    assert result.stderr.startswith(f"Configuration error: {name} is ")
    assert Turn.objects.count() == 0


@pytest.mark.parametrize(
    "program",
    [["-m", "celery", "-A", "beamclaw", "worker"], ["-m", "celery", "-A", "beamclaw", "beat"]],
)
def test_a_worker_and_beat_refuse_an_empty_broker_url(platform_env, program):
    result = run(python(*program), dict(platform_env, CELERY_BROKER_URL=""))

    assert result.returncode != 0
    assert "Configuration error: CELERY_BROKER_URL is empty" in result.stderr


def test_manage_py_uses_the_running_make_runs_redis_when_redis_url_is_unset(tmp_path):
    (tmp_path / "redis").mkdir()
    (tmp_path / "redis" / "run.url").write_text(TEST_REDIS_URL + "\n")
    env = {
        "PATH": "/usr/bin:/bin",
        "BEAMCLAW_VAR_DIR": str(tmp_path),
        "BEAMCLAW_INSTALLATION_ID": "test",
        "DEBUG": "1",  # a development machine, as `make run`'s
    }
    show = "from django.conf import settings; print(settings.REDIS_URL, settings.CELERY_BROKER_URL)"

    result = run([sys.executable, "manage.py", "shell", "-c", show], env)

    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-2:] == [TEST_REDIS_URL, TEST_REDIS_URL]
