"""`manage.py workers --standby 1`: a warm standby worker, started and consuming nothing,
that the supervisor turns on when it scales up."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from tests.support import ROOT, Process, python, wait_until

from .conftest import hash_shard_tenants
from .test_supervisor import FAST_SIGNAL, _supervisor_state

pytestmark = pytest.mark.django_db(transaction=True)

WORKERS_1_TO_3 = ["--min", "1", "--max", "3", "--concurrency", "2"]
WORKERS_1_TO_3 += ["--standby", "1", "--interval", "0.5"]


def _listed(stack) -> dict[str, dict]:
    """The registry with the standbys (stack.registry() lists the serving workers)."""
    from django.test import override_settings

    from fleet.registry import list_workers

    with override_settings(REDIS_URL=stack.env["REDIS_URL"]):
        return {e["hostname"]: e for e in list_workers(with_standby=True)}


def _in_state(stack, state: str) -> dict[str, dict]:
    return {h: e for h, e in _listed(stack).items() if e["state"] == state}


def _queues(stack, hostname: str) -> set[str]:
    """The queues `hostname` consumes (a worker is listed before it answers commands)."""

    def answer() -> tuple[list[dict]] | None:
        reply = stack._probe.control.inspect([hostname], timeout=1).active_queues() or {}
        return (reply[hostname],) if hostname in reply else None  # [] is an answer too

    (queues,) = wait_until(answer, timeout=30, message=f"{hostname} to answer")
    return {queue["name"] for queue in queues}


def _scale(stack, count: str) -> None:
    done = subprocess.run(
        python("manage.py", "scale", count), cwd=ROOT, env=stack.env, capture_output=True
    )
    assert done.returncode == 0, done.stderr


def _name(hostname: str) -> str:
    return hostname.split("@")[0]


def _wait_ready(supervisor: Process, hostname: str) -> None:
    """Until the supervisor has seen the standby answer (it activates only those)."""
    wait_until(
        lambda: f"standby {_name(hostname)} is ready" in supervisor.log(),
        timeout=30,
        message=f"the supervisor to find {hostname} ready",
    )


def _one(entries: dict[str, dict]) -> tuple[str, dict]:
    assert len(entries) == 1, entries
    return next(iter(entries.items()))


def test_a_standby_consumes_nothing_until_scale_up_turns_it_on_and_is_never_drained(
    stack, model, log_dir
):
    (slug,) = hash_shard_tenants(model, 1)
    stack.env.update(FAST_SIGNAL)
    supervisor = Process(
        f"{stack.prefix}-supervisor",
        python("manage.py", "workers", *WORKERS_1_TO_3),
        stack.env,
        log_dir,
    )
    stack.others.append(supervisor)

    # --min 1 and one standby: two processes, one of them serving.
    wait_until(
        lambda: len(_in_state(stack, "active")) == 1 and len(_in_state(stack, "standby")) == 1,
        timeout=60,
        message="one worker and one standby",
    )
    worker, _ = _one(_in_state(stack, "active"))
    spare, spare_entry = _one(_in_state(stack, "standby"))
    assert _queues(stack, spare) == set()
    assert {"beamclaw", f"tenant.{slug}"} <= _queues(stack, worker)
    assert list(stack.registry()) == [worker]  # not listed as a serving worker
    _wait_ready(supervisor, spare)

    # Scale up: the standby (the same process) consumes, and a new standby takes its place.
    _scale(stack, "2")
    wait_until(
        lambda: _listed(stack).get(spare, {}).get("state") == "active",
        timeout=15,
        message="the standby to be activated",
    )
    assert _listed(stack)[spare]["pid"] == spare_entry["pid"]
    assert {"beamclaw", f"tenant.{slug}"} <= _queues(stack, spare)
    assert f"activated standby {_name(spare)}" in supervisor.log()
    spare2, _ = wait_until(
        lambda: len(s := _in_state(stack, "standby")) == 1 and _one(s),
        timeout=60,
        message="a new standby",
    )
    assert spare2 != spare and _queues(stack, spare2) == set()

    # Scale down: an active worker is drained, never the standby.
    _scale(stack, "1")
    wait_until(lambda: len(stack.registry()) == 1, timeout=30, message="one worker left")
    assert _in_state(stack, "standby").keys() == {spare2}
    assert f"draining worker {_name(spare2)}" not in supervisor.log()

    # A standby that does not answer (stopped here) is replaced; the worker starts cold.
    _wait_ready(supervisor, spare2)
    stuck = _listed(stack)[spare2]["pid"]
    os.kill(stuck, signal.SIGSTOP)
    try:
        _scale(stack, "2")
        wait_until(
            lambda: len(_in_state(stack, "active")) == 2,
            timeout=60,
            message="a worker started cold",
        )
        assert f"standby {_name(spare2)} did not answer" in supervisor.log()
        assert spare2 not in _in_state(stack, "active")
    finally:
        os.kill(stuck, signal.SIGCONT)  # it exits on the SIGTERM it was sent

    # At --max no standby is kept: it could never be turned on.
    spare3, _ = wait_until(
        lambda: len(s := _in_state(stack, "standby")) == 1 and _one(s),
        timeout=60,
        message="a standby in place of the one that did not answer",
    )
    _wait_ready(supervisor, spare3)
    _scale(stack, "3")
    wait_until(lambda: len(_in_state(stack, "active")) == 3, timeout=30, message="3 workers")
    asked = time.time()
    state = wait_until(
        lambda: (s := _supervisor_state(stack)) and s["seen_at"] > asked + 1 and s,
        timeout=30,
        message="the supervisor's looks at the load at --max",
    )
    assert (state["workers"], state["standby"]) == (3, 0)
    wait_until(lambda: not _in_state(stack, "standby"), timeout=30, message="no standby left")

    supervisor.proc.send_signal(signal.SIGTERM)
    assert supervisor.proc.wait(30) == 0
    wait_until(lambda: not _listed(stack), timeout=20, message="every worker gone")
