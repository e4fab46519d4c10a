"""Live events over SSE from a real ASGI server, resume with Last-Event-ID, and `wait`."""

import json
import threading
from collections.abc import Iterator

import httpx
import pytest

from agents.models import Turn
from agents.runtime.events import DeltaBuffer
from tests.support import send, wait_for_turn

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("worker")]


def iter_events(response: httpx.Response) -> Iterator[dict]:
    """Each SSE frame as soon as it has arrived."""
    frame = {}
    for line in response.iter_lines():
        if line.startswith(":"):
            continue
        if not line:
            if frame:
                yield frame
                frame = {}
            continue
        field, _, value = line.partition(": ")
        frame[field] = json.loads(value) if field == "data" else value


def read_events(response: httpx.Response) -> list[dict]:
    """Parse SSE frames until the stream ends."""
    return list(iter_events(response))


def stream_turn(web, acme, turn_id, last_event_id=None) -> list[dict]:
    headers = {**acme.headers, "Accept": "text/event-stream"}
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    url = f"{web}/api/v1/turns/{turn_id}/events"
    with httpx.stream("GET", url, headers=headers, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return read_events(response)


def test_a_client_sees_deltas_before_the_turn_finishes_and_can_resume(web, acme, agent, model):
    # The model sends its first word, then holds the stream open until we let it go.
    release = threading.Event()
    model.add_rule(match=r"tell me", reply="one two three four five six", hold=release)

    turn_id = send(acme, "agent:ops:main", "tell me a story")["turn"]["id"]
    headers = {**acme.headers, "Accept": "text/event-stream"}
    url = f"{web}/api/v1/turns/{turn_id}/events"
    events, at_first_delta = [], {}
    watchdog = threading.Timer(60, release.set)  # a stream that never shows a delta still ends
    watchdog.start()
    try:
        with httpx.stream("GET", url, headers=headers, timeout=30) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            for event in iter_events(response):
                events.append(event)
                if event["event"] == "message.delta" and not at_first_delta:
                    at_first_delta = {
                        "turn": Turn.objects.get(pk=turn_id).status,
                        # Its one call cannot finish before `release`: still open.
                        "model call open": [r["finished_at"] is None for r in model.requests],
                    }
                    release.set()
    finally:
        watchdog.cancel()
        release.set()

    # The first delta reached the client while the model was mid-answer and the turn ran.
    assert at_first_delta == {"turn": "running", "model call open": [True]}
    kinds = [e["event"] for e in events]
    assert kinds[0] == "turn.queued"
    assert kinds[-1] == "turn.finished"
    assert events[-1]["data"]["status"] == "succeeded"
    assert "turn.started" in kinds and "message.completed" in kinds
    deltas = [e for e in events if e["event"] == "message.delta"]
    assert deltas[0]["data"]["text"] == "one "  # the word sent before the model paused
    assert len(deltas) >= 2
    assert "".join(d["data"]["text"] for d in deltas) == "one two three four five six"

    # Resuming after the second event gives exactly the rest, no gap, no repeat.
    resumed = stream_turn(web, acme, turn_id, last_event_id=events[1]["id"])
    assert [e["id"] for e in resumed] == [e["id"] for e in events[2:]]


def test_a_failed_turn_streams_turn_failed_with_its_code(web, acme, agent, model):
    model.add_rule(match=r".*", status=401)

    turn_id = send(acme, "agent:ops:main", "hello")["turn"]["id"]
    events = stream_turn(web, acme, turn_id)

    failed = [e for e in events if e["event"] == "turn.failed"]
    assert failed and failed[0]["data"]["code"] == "provider_auth_failed"
    assert events[-1]["event"] == "turn.finished"
    assert events[-1]["data"]["status"] == "failed"


def test_the_session_stream_carries_every_turn_of_the_session(web, acme, agent, model):
    first = send(acme, "agent:ops:main", "one")["turn"]["id"]
    second = send(acme, "agent:ops:main", "two")["turn"]["id"]
    wait_for_turn(second)

    url = f"{web}/api/v1/sessions/agent:ops:main/events"
    seen = []
    with httpx.stream("GET", url, headers=acme.headers, timeout=30) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                seen.append(json.loads(line[6:]))
            if sum(1 for _ in filter(lambda d: "status" in d, seen)) == 2:
                break
    finished = [d["turn_id"] for d in seen if d.get("status") == "succeeded"]
    assert finished == [first, second]


def test_wait_answers_with_the_finished_turn_and_its_reply(web, acme, agent):
    response = httpx.post(
        f"{web}/api/v1/sessions/agent:ops:main/messages",
        json={"content": "hi there", "wait": 20},
        headers=acme.headers,
        timeout=30,
    )

    assert response.status_code == 200
    body = response.json()
    assert body["turn"]["status"] == "succeeded"
    assert body["turn"]["reply"] == "echo: hi there"


def test_wait_gives_202_when_the_turn_is_slower_than_the_wait(web, acme, agent, model):
    model.add_rule(match=r".*", latency=2)

    response = httpx.post(
        f"{web}/api/v1/sessions/agent:ops:main/messages",
        json={"content": "hi", "wait": 0.3},
        headers=acme.headers,
        timeout=30,
    )

    assert response.status_code == 202
    assert response.json()["turn"]["status"] in ("queued", "running")
    wait_for_turn(response.json()["turn"]["id"])


def test_wait_and_event_streams_outlast_a_quiet_spell_longer_than_redis_read_timeouts(
    web, acme, agent, model
):
    """A model call of 6.5 s: nothing happens on the stream meanwhile (redis-py gives up
    reading after 5 s unless told otherwise)."""
    model.add_rule(match=r"slow", latency=6.5)

    waited = httpx.post(
        f"{web}/api/v1/sessions/agent:ops:main/messages",
        json={"content": "slow one", "wait": 20},
        headers=acme.headers,
        timeout=30,
    )
    streamed_turn = send(acme, "agent:ops:other", "slow two")["turn"]["id"]
    events = stream_turn(web, acme, streamed_turn)

    assert waited.status_code == 200, waited.json()
    assert waited.json()["turn"]["reply"] == "echo: slow one"
    assert events[-1]["event"] == "turn.finished"


def test_the_first_streamed_words_are_published_at_once_and_the_rest_coalesced():
    published = []
    deltas = DeltaBuffer(lambda kind, data: published.append(data["text"]), interval=60)

    deltas("Once")  # right after the call began: a warm worker's first token
    deltas(" upon")
    deltas(" a time")

    assert published == ["Once"]  # a model pausing here must not hide its first word
    deltas.flush()
    assert published == ["Once", " upon a time"]
