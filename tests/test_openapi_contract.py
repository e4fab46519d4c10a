"""The served OpenAPI schema against the live API: a fuzzer (schemathesis) sends valid and
invalid requests to every operation of a production-configured server, with a tenant's
API key, and every answer must be one the schema documents: its status, its content
type and its body. Clients generated from the schema rely on exactly that.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet

from agents import services
from agents.cron import schedules
from agents.cron import services as cron_services
from agents.models import CronTrigger, Session, Turn, TurnStatus
from tests.support import start_web

pytestmark = pytest.mark.django_db(transaction=True)

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
    ]
)
EXAMPLES_PER_OPERATION = 10
SEED = 20261203
# Event streams never end by themselves: their shape is checked in test_openapi_events.
EVENT_STREAMS = "/events$"
# No worker runs here, so a `wait=` on a submission would block for its whole length.
WAIT_BOUND_SECONDS = 1


@pytest.fixture
def production_web(platform_env, log_dir):
    """The API as deployed: DEBUG off, so unknown URLs get the API's own 404 too."""
    env = {**platform_env, "DEBUG": "0", "FERNET_KEYS": Fernet.generate_key().decode()}
    process, base_url = start_web(env, log_dir, "contract-web")
    yield base_url
    process.stop()


def seed_objects(tenant) -> None:
    """One of each object the API returns, with the fields that may be null both ways."""
    root = services.submit_message(tenant=tenant, session_key="agent:ops:main", content="hi")
    Session.objects.create(
        tenant=tenant, agent=root.turn.agent, key="agent:ops:child", parent=root.turn.session
    )
    Turn.objects.filter(pk=root.turn.pk).update(
        status=TurnStatus.FAILED, error_code="provider_timeout", error_message="Too slow."
    )
    job = cron_services.create_cron_job(
        tenant=tenant,
        agent="ops",
        message="report",
        schedule=schedules.check_schedule(every_seconds=3600),
    )
    cron_services.run_cron_job(job=job, trigger=CronTrigger.MANUAL)


def bounded_schema(base_url: str, path: Path) -> Path:
    """The served schema, with `wait=` bounded so no request blocks for long."""
    response = httpx.get(f"{base_url}/api/schema/", params={"format": "json"}, timeout=30)
    assert response.status_code == 200
    schema = response.json()
    schema["components"]["schemas"]["SubmitMessageRequest"]["properties"]["wait"]["maximum"] = (
        WAIT_BOUND_SECONDS
    )
    path.write_text(json.dumps(schema))
    return path


def test_every_answer_of_the_api_is_one_its_schema_documents(production_web, acme, agent, tmp_path):
    seed_objects(acme.tenant)
    schema_file = bounded_schema(production_web, tmp_path / "schema.json")

    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        str(schema_file),
        "--url",
        production_web,
        "--header",
        f"Authorization: Bearer {acme.key}",
        "--checks",
        CHECKS,
        "--max-examples",
        str(EXAMPLES_PER_OPERATION),
        "--seed",
        str(SEED),
        "--exclude-path-regex",
        EVENT_STREAMS,
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--output-truncate",
        "false",
    ]
    result = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False
    )

    assert result.returncode == 0, result.stdout[-15000:] + result.stderr[-3000:]
    selected = re.search(r"Selected: (\d+)/", result.stdout)
    tested = re.search(r"Tested: (\d+)", result.stdout)
    assert selected and tested and tested[1] == selected[1], result.stdout[-3000:]
