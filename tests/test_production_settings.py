"""Safe by default: DEBUG off unless asked for, and no start in production without secrets.

Each case starts real processes with the environment an operator would give them.
"""

from __future__ import annotations

import subprocess

import httpx
import pytest
from cryptography.fernet import Fernet

from tests.support import ROOT, python, start_web

pytestmark = pytest.mark.django_db(transaction=True)

SECRETS = ("DEBUG", "SECRET_KEY", "FERNET_KEYS")


def production_env(platform_env: dict[str, str], **values: str) -> dict[str, str]:
    """The platform's environment without DEBUG and the secrets, plus `values`."""
    env = {name: value for name, value in platform_env.items() if name not in SECRETS}
    return {**env, **values}


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        python("manage.py", *args), cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ({}, ["SECRET_KEY", "FERNET_KEYS"]),
        ({"SECRET_KEY": "k" * 50}, ["FERNET_KEYS"]),
        ({"SECRET_KEY": "k" * 50, "FERNET_KEYS": " , "}, ["FERNET_KEYS"]),
        ({"FERNET_KEYS": Fernet.generate_key().decode()}, ["SECRET_KEY"]),
        ({"DEBUG": "0", "SECRET_KEY": "k" * 50, "FERNET_KEYS": "not-a-key"}, ["FERNET_KEYS"]),
    ],
)
def test_without_debug_the_platform_refuses_to_start_without_its_secrets_in_one_line(
    platform_env, given, named
):
    result = manage(production_env(platform_env, **given), "check")

    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("BeamClaw will not start:")
    for name in named:
        assert name in lines[0]


def test_debug_is_off_unless_asked_for(platform_env):
    secrets = {"SECRET_KEY": "k" * 50, "FERNET_KEYS": Fernet.generate_key().decode()}
    show = [
        "shell",
        "--no-imports",
        "-c",
        "from django.conf import settings; print(settings.DEBUG)",
    ]

    unset = manage(production_env(platform_env, **secrets), *show)
    asked = manage(production_env(platform_env, DEBUG="1"), *show)

    assert (unset.returncode, unset.stdout.strip()) == (0, "False"), unset.stderr
    assert (asked.returncode, asked.stdout.strip()) == (0, "True"), asked.stderr


def test_a_production_server_answers_client_mistakes_in_json_without_internals(
    platform_env, log_dir
):
    env = production_env(
        platform_env, SECRET_KEY="k" * 50, FERNET_KEYS=Fernet.generate_key().decode()
    )
    process, base_url = start_web(env, log_dir, "web-production")
    try:
        hook = httpx.post(f"{base_url}/hooks/slack/%C2%B2/events", content=b"{}", timeout=10)
        unknown = httpx.get(f"{base_url}/api/v1/no-such-thing", timeout=10)
        metrics = httpx.get(f"{base_url}/metrics", timeout=10)
    finally:
        process.stop()

    for response, status, code in [
        (hook, 404, "not_found"),
        (unknown, 404, "not_found"),
        (metrics, 403, "metrics_not_configured"),
    ]:
        assert response.status_code == status, response.text
        assert response.json()["error"]["code"] == code
        assert "DATABASE_URL" not in response.text and "postgres" not in response.text
