"""Workers come and go under load: SIGTERM mid-run and start/drain churn lose nothing."""

from __future__ import annotations

import signal
import threading
from collections import Counter

import httpx
import pytest
import redis

from agents.models import Message
from beamclaw.redis import broker_key_prefix
from tests.support import conversation, make_agent, wait_until

from .conftest import not_succeeded, wait_exit, wait_for_turns

pytestmark = pytest.mark.django_db(transaction=True)


def last_user_text(record: dict) -> str:
    return [m["content"] for m in record["messages"] if m["role"] == "user"][-1]


def assert_each_answered_once_in_order(
    model, keys: dict[str, list[str]], turn_ids, *, cut_short: frozenset[str] = frozenset()
) -> None:
    """Every message got one model call and one answer, in its session's order. A call
    `cut_short` by a killed worker is made again: once more, never more."""
    calls = Counter(last_user_text(r) for r in model.requests)
    sent = [text for texts in keys.values() for text in texts]
    assert calls == {text: 2 if text in cut_short else 1 for text in sent}
    answers = Counter(
        Message.objects.filter(turn_id__in=turn_ids, role="assistant").values_list(
            "turn_id", flat=True
        )
    )
    assert answers == dict.fromkeys(turn_ids, 1)
    for key, texts in keys.items():
        expected = [
            (role, text) for t in texts for role, text in (("user", t), ("assistant", f"echo: {t}"))
        ]
        assert [(role, content) for _, role, content in conversation(key)] == expected, key


def test_sigterm_mid_run_hands_the_rest_to_another_worker_in_order(stack, dedicated, model):
    make_agent(dedicated.tenant, model)
    model.add_rule(latency=2.0)
    stack.start(web=True, workers=("a",), beat=True)

    keys = {f"agent:ops:s{s}": [f"s{s} m{m}" for m in range(4)] for s in range(10)}
    turn_ids = [
        stack.send(key, text)["turn"]["id"] for key, texts in keys.items() for text in texts
    ]
    wait_until(lambda: len(model.requests) >= 8, timeout=20, message="worker a mid-run")
    stack.start(workers=("b",))

    stack.workers["a"].kill(signal.SIGTERM)
    stopped_after = wait_exit(stack.workers["a"], timeout=15)

    assert stopped_after < 2.0 + 2.0  # the model call in flight, and a little
    turns = wait_for_turns(turn_ids, timeout=90)
    assert not_succeeded(turns) == []
    assert_each_answered_once_in_order(model, keys, turn_ids)
    assert all(t.attempts == 1 for t in turns.values())  # handed over, never re-run


@pytest.mark.timeout(300)
def test_thirty_start_and_drain_cycles_under_steady_arrivals_lose_and_double_nothing(
    stack, dedicated, model, callers
):
    make_agent(dedicated.tenant, model)
    model.add_rule(latency=0.3)
    stack.env["WORKER_SHUTDOWN_GRACE_SECONDS"] = "5"
    stack.start(web=True, workers=("steady",), beat=True)

    keys: dict[str, list[str]] = {f"agent:ops:c{s}": [] for s in range(8)}
    turn_ids: list[int] = []
    stop = threading.Event()
    errors: list[str] = []

    def arrivals() -> None:
        with httpx.Client(base_url=stack.base_url, headers=dedicated.headers, timeout=30) as http:
            n = 0
            while not stop.is_set():
                key = list(keys)[n % len(keys)]
                text = f"{key} #{n}"
                response = http.post(f"/api/v1/sessions/{key}/messages", json={"content": text})
                if response.status_code == 202:
                    keys[key].append(text)
                    turn_ids.append(response.json()["turn"]["id"])
                else:
                    errors.append(response.text)
                n += 1
                stop.wait(0.1)  # ~8 arrivals/s: the load, not a synchronisation

    sender = threading.Thread(target=arrivals)
    sender.start()
    try:
        for cycle in range(30):
            name = f"churn{cycle}"
            stack.start(workers=(name,))
            wait_until(
                lambda name=name: sum(r.get("worker") == name for r in model.requests) >= 2,
                timeout=20,
                message=f"{name} to take some of the load",
            )
            reply = stack._probe.control.broadcast(
                "drain_worker", destination=[stack.hostname(name)], reply=True, timeout=2, limit=1
            )
            assert reply, f"{name} did not answer the drain"
            wait_exit(stack.workers[name], timeout=15)
    finally:
        stop.set()
        sender.join()

    assert errors == []
    turns = wait_for_turns(turn_ids, timeout=60)
    assert not_succeeded(turns) == []
    assert_each_answered_once_in_order(model, keys, turn_ids)


def test_messages_a_killed_worker_had_reserved_come_back_later_and_change_nothing(
    stack, dedicated, model, private_redis
):
    make_agent(dedicated.tenant, model)
    model.add_rule(latency=3.0)
    stack.env["CELERY_VISIBILITY_TIMEOUT"] = "6"
    stack.start(web=True, workers=("a",), beat=True)
    broker = redis.Redis.from_url(private_redis.url)

    keys = {f"agent:ops:k{s}": [f"k{s} only"] for s in range(20)}
    turn_ids = [stack.send(key, texts[0])["turn"]["id"] for key, texts in keys.items()]
    # 8 threads run 8 turns; prefetch holds more, reserved but not started.
    wait_until(lambda: len(model.requests) >= 8, timeout=20, message="a's threads busy")
    wait_until(
        lambda: broker.hlen(f"{broker_key_prefix()}unacked") > 0,
        timeout=10,
        message="reserved messages",
    )
    stack.workers["a"].kill(signal.SIGKILL)
    stranded = broker.hlen(f"{broker_key_prefix()}unacked")
    cut_short = frozenset(last_user_text(r) for r in model.requests)  # in flight on a
    stack.start(workers=("b",))

    turns = wait_for_turns(turn_ids, timeout=60)  # the reaper re-dispatched them
    # The reaper puts them back once they are older than the visibility timeout...
    wait_until(
        lambda: broker.hlen(f"{broker_key_prefix()}unacked") == 0,
        timeout=30,
        message="the strays restored",
    )
    # ...and run by b: each finds its turn done (or its session's lease held) and does nothing.
    wait_until(
        lambda: not any(stack.active_tasks("b")), timeout=20, message="b idle after the strays"
    )

    assert stranded > 0
    assert not_succeeded(turns) == []
    assert_each_answered_once_in_order(model, keys, turn_ids, cut_short=cut_short)
