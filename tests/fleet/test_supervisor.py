"""`manage.py workers`: worker processes that follow the load, restart, and drain."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import httpx
import pytest

from tests.support import ROOT, Process, python, wait_until

from .conftest import hash_shard_tenants, not_succeeded, wait_for_turns

pytestmark = pytest.mark.django_db(transaction=True)

FAST_SIGNAL = {
    "CAPACITY_INTERVAL_SECONDS": "1",
    "CAPACITY_MAX_WAIT_SECONDS": "1",
    "CAPACITY_SCALE_DOWN_WINDOW_SECONDS": "4",
    "CAPACITY_DEFAULT_SERVICE_SECONDS": "1",
    "CAPACITY_WORKER_CONCURRENCY": "2",
    "WORKER_HEARTBEAT_SECONDS": "0.5",
    "QUEUE_RECONCILE_SECONDS": "1",
}


def _active(stack) -> dict[str, dict]:
    return {h: e for h, e in stack.registry().items() if e["state"] == "active"}


def test_the_supervisor_grows_with_a_backlog_shrinks_by_draining_and_restarts_the_dead(
    stack, model, log_dir
):
    model.add_rule(latency=1.0)
    key = next(iter(hash_shard_tenants(model, 1).values()))
    stack.env.update(FAST_SIGNAL)
    stack.start(web=True, beat=True)
    supervisor = Process(
        f"{stack.prefix}-supervisor",
        python(
            "manage.py",
            "workers",
            "--min",
            "1",
            "--max",
            "3",
            "--concurrency",
            "2",
            "--interval",
            "0.5",
        ),
        stack.env,
        log_dir,
    )
    stack.others.append(supervisor)
    wait_until(lambda: len(_active(stack)) == 1, timeout=30, message="the first worker")

    def send(session: str) -> int:
        response = httpx.post(
            f"{stack.base_url}/api/v1/sessions/{session}/messages",
            json={"content": "go"},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert response.status_code == 202, response.text
        return response.json()["turn"]["id"]

    turn_ids = [send(f"agent:ops:burst{n}") for n in range(12)]
    wait_until(lambda: len(_active(stack)) == 3, timeout=20, message="3 workers for the burst")
    turns = wait_for_turns(turn_ids, timeout=60)
    assert not_succeeded(turns) == []
    assert len({e["pid"] for e in _active(stack).values()}) == 3

    # The burst is over: back to the minimum, by draining (not killing) the extra two.
    wait_until(lambda: len(stack.registry()) == 1, timeout=30, message="one worker left")
    assert "draining worker" in supervisor.log()

    # A worker that dies is started again.
    (victim,) = _active(stack).values()
    os.kill(victim["pid"], signal.SIGKILL)
    wait_until(
        lambda: [e["pid"] for e in _active(stack).values()] not in ([], [victim["pid"]]),
        timeout=30,
        message="a replacement worker",
    )
    assert "restarting in" in supervisor.log()

    # A fixed count wins over the signal until `scale auto`.
    scale = subprocess.run(
        python("manage.py", "scale", "2"),
        cwd=ROOT,
        env=stack.env,
        capture_output=True,
        text=True,
    )
    assert scale.returncode == 0, scale.stderr
    wait_until(lambda: len(_active(stack)) == 2, timeout=30, message="2 workers by `scale 2`")
    subprocess.run(python("manage.py", "scale", "auto"), cwd=ROOT, env=stack.env, check=True)
    wait_until(lambda: len(stack.registry()) == 1, timeout=30, message="back to the signal")

    supervisor.proc.send_signal(signal.SIGTERM)
    assert supervisor.proc.wait(30) == 0
    wait_until(lambda: not stack.registry(), timeout=10, message="every worker gone")


def _supervisor_state(stack) -> dict | None:
    from django.test import override_settings

    from fleet.supervisor import supervisors_of

    with override_settings(REDIS_URL=stack.env["REDIS_URL"]):
        states = supervisors_of("all")
    return states[0] if len(states) == 1 else None


def _manage(stack, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        python("manage.py", *args), cwd=ROOT, env=stack.env, capture_output=True, text=True
    )


def test_a_worker_drained_by_hand_stays_gone_and_scale_names_the_supervisors_cap(stack, log_dir):
    stack.env.update(FAST_SIGNAL)
    asked = _manage(stack, "scale", "2")
    assert asked.returncode == 0, asked.stderr
    assert "no `manage.py workers` runs for all now" in asked.stdout
    supervisor = Process(
        f"{stack.prefix}-supervisor",
        python("manage.py", "workers", "--min", "1", "--max", "2", "--interval", "0.5"),
        stack.env,
        log_dir,
    )
    stack.others.append(supervisor)
    wait_until(lambda: len(_active(stack)) == 2, timeout=60, message="2 workers by `scale 2`")

    victim = sorted(_active(stack))[0]
    drain = _manage(stack, "drain", victim)
    assert drain.returncode == 0, drain.stdout + drain.stderr
    assert f"{victim}: gone after" in drain.stdout

    # The supervisor sees the exit, knows it was a drain and lowers its target...
    name = victim.split("@")[0]
    wait_until(
        lambda: f"worker {name} was drained" in supervisor.log(),
        timeout=30,
        message="the supervisor to take the drained worker's exit as final",
    )
    noticed = time.time()
    # ...and keeps it lower: several looks at the load later, still one worker.
    state = wait_until(
        lambda: (s := _supervisor_state(stack)) and s["seen_at"] > noticed + 3 and s,
        timeout=30,
        message="the supervisor's looks at the load after the drain",
    )
    assert (state["workers"], state["target"], state["withheld"]) == (1, 1, 1)
    workers_now = stack.registry()
    assert len(workers_now) == 1 and victim not in workers_now
    assert "restarting in" not in supervisor.log()

    # `scale 3` under --max 2: the answer says the supervisor runs 2, and why.
    scale = _manage(stack, "scale", "3")
    assert scale.returncode == 0, scale.stderr
    assert "all: 3 worker(s) asked" in scale.stdout
    assert "runs 2 worker(s), capped by its --max 2" in scale.stdout, scale.stdout
    wait_until(lambda: len(_active(stack)) == 2, timeout=60, message="2 workers by `scale 3`")

    supervisor.proc.send_signal(signal.SIGTERM)
    assert supervisor.proc.wait(30) == 0
    wait_until(lambda: not stack.registry(), timeout=20, message="every worker gone")
