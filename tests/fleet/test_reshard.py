"""Live resharding and queue reconciliation with real hash-shard workers."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
import uuid
from collections import Counter

import httpx
import pytest

from agents.models import Message, Turn
from fleet.models import ShardMap
from fleet.shards import shard_index
from tenants.services import create_tenant
from tests.support import ROOT, python, wait_until

from .conftest import hash_shard_tenants, not_succeeded, wait_for_turns

pytestmark = pytest.mark.django_db(transaction=True)
LATENCY = 0.2


def _consumers(stack, name: str) -> set[str]:
    hostname = stack.hostname(name)
    reply = stack._probe.control.inspect([hostname], timeout=2, limit=1).active_queues() or {}
    return {q["name"] for q in reply.get(hostname, [])}


def _reshard(stack, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        python("manage.py", "reshard", *args),
        cwd=ROOT,
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_tenant_a_running_worker_was_never_told_about_is_consumed_within_a_reconcile(
    stack, model
):
    stack.env["QUEUE_RECONCILE_SECONDS"] = "1"
    stack.shards = {"s0": "0/2", "s1": "1/2"}
    stack.start(workers=("s0", "s1"))
    # Written straight to the table: no broadcast reaches the workers (as if they missed it).
    slug = next(iter(hash_shard_tenants(model, 1, shard_of_2=1)))

    started = time.monotonic()
    wait_until(
        lambda: f"tenant.{slug}" in _consumers(stack, "s1"),
        timeout=10,
        message="its shard's worker to consume the new tenant's queue",
    )

    assert time.monotonic() - started < 1 + 2  # one reconcile period, and a ping's worth
    assert f"tenant.{slug}" not in _consumers(stack, "s0")


def test_a_tenant_announced_while_its_worker_was_down_is_consumed_after_the_restart(stack, model):
    stack.shards = {"s1": "1/2"}
    stack.start(workers=("s1",))
    stack.workers["s1"].kill(signal.SIGKILL)
    stack.workers["s1"].proc.wait(10)
    tenant = create_tenant(slug=_slug_in_shard_1(), name="late")  # its broadcast is lost

    stack.restart_worker("s1")

    wait_until(
        lambda: f"tenant.{tenant.slug}" in _consumers(stack, "s1"),
        timeout=5,
        message="the restarted worker to consume the tenant it missed",
    )


def _slug_in_shard_1() -> str:
    prefix = f"late{uuid.uuid4().hex[:6]}"
    return next(f"{prefix}-{i}" for i in range(1000) if shard_index(f"{prefix}-{i}", 2) == 1)


def test_resharding_under_load_moves_queues_with_nothing_lost_or_doubled(stack, model):
    model.add_rule(latency=LATENCY)
    keys = hash_shard_tenants(model, 6)
    stack.env.update(QUEUE_RECONCILE_SECONDS="1", WORKER_HEARTBEAT_SECONDS="0.5")
    stack.shards = {"s0": "0/2", "s1": "1/2"}
    stack.start(web=True, workers=("s0", "s1"), beat=True)

    sent: list[tuple[int, str]] = []  # (turn id, phase)
    phase = ["before"]
    stop = threading.Event()
    failures: list[str] = []

    def arrivals() -> None:
        """5 turns/s, round robin over the tenants and 2 sessions each."""
        with httpx.Client(base_url=stack.base_url, timeout=30) as client:
            n = 0
            while not stop.is_set():
                slug = list(keys)[n % len(keys)]
                response = client.post(
                    f"/api/v1/sessions/agent:ops:s{n % 2}/messages",
                    json={"content": f"message {n}"},
                    headers={"Authorization": f"Bearer {keys[slug]}"},
                )
                if response.status_code != 202:
                    failures.append(response.text)
                else:
                    sent.append((response.json()["turn"]["id"], phase[0]))
                n += 1
                stop.wait(0.2)  # the arrival rate, not a synchronisation

    sender = threading.Thread(target=arrivals)
    sender.start()
    try:
        wait_until(lambda: len(sent) >= 15, timeout=20, message="a baseline of arrivals")
        phase[0] = "reshard"
        to_one = _reshard(stack, "--shards", "1", "--note", "test: all on shard 0")
        back = _reshard(stack, "--shards", "2")
        phase[0] = "after"
        wait_until(lambda: sum(p == "after" for _, p in sent) >= 10, timeout=20, message="more")
    finally:
        stop.set()
        sender.join()

    assert failures == []
    assert to_one.returncode == 0, to_one.stdout + to_one.stderr
    assert back.returncode == 0, back.stdout + back.stderr
    assert "map 1 active: 1 shard(s)" in to_one.stdout
    assert f"{stack.hostname('s1')} owns no tenant now" in to_one.stdout
    assert "map 2 active: 2 shard(s)" in back.stdout
    assert list(ShardMap.objects.values_list("epoch", "status")) == [
        (2, "active"),
        (1, "retired"),
    ]
    assert {e["hostname"]: e["shard_map_epochs"] for e in stack.registry().values()} == {
        stack.hostname("s0"): [2],
        stack.hostname("s1"): [2],
    }
    turn_ids = [turn_id for turn_id, _ in sent]
    turns = wait_for_turns(turn_ids, timeout=60)
    assert not_succeeded(turns) == []
    # Every message was answered once: one model call and one answer each.
    asked = Counter(
        [m["content"] for m in r["messages"] if m["role"] == "user"][-1] for r in model.requests
    )
    assert len(asked) == len(sent) and max(asked.values()) == 1
    answers = Counter(
        Message.objects.filter(turn_id__in=turn_ids, role="assistant").values_list(
            "turn_id", flat=True
        )
    )
    assert answers == dict.fromkeys(turn_ids, 1)

    def worst_wait(which: str) -> float:
        rows = Turn.objects.filter(pk__in=[t for t, p in sent if p == which])
        return max((t.started_at - t.created_at).total_seconds() for t in rows)

    assert worst_wait("reshard") < worst_wait("before") + 1.5
