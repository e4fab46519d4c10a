"""Open event streams and `wait` requests: capped per tenant and per web process, and ended
cleanly when the key is revoked, the tenant suspended or Redis goes away.

Every stream here is a real SSE response from a real uvicorn process, read on a thread.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading

import httpx
import pytest
import redis
from django.conf import settings

from agents.models import Turn
from tenants.models import ApiKey
from tenants.services import revoke_api_key, set_limits
from tenants.stream_slots import key_of as stream_slots_key
from tests.fleet.conftest import RedisServer
from tests.support import make_agent, send, start_web, wait_for_turn, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("worker")]

SESSION = "agent:ops:main"


def session_events(base_url: str, key: str = SESSION) -> str:
    return f"{base_url}/api/v1/sessions/{key}/events"


class LiveStream:
    """An SSE response read on its own thread: its frames so far and how it ended."""

    def __init__(self, url: str, headers: dict[str, str]):
        self.frames: list[dict] = []
        self.status: int | None = None
        self.error: Exception | None = None  # how the read broke, if it did not end cleanly
        self.opened = threading.Event()  # the server admitted it and began the stream
        self.ended = threading.Event()
        self._client = httpx.Client(timeout=httpx.Timeout(90, connect=10))
        self._socket: socket.socket | None = None
        self._thread = threading.Thread(target=self._read, args=(url, headers), daemon=True)
        self._thread.start()

    def _read(self, url: str, headers: dict[str, str]) -> None:
        try:
            with self._client.stream("GET", url, headers=headers) as response:
                self.status = response.status_code
                self._socket = response.extensions["network_stream"].get_extra_info("socket")
                frame: dict = {}
                for line in response.iter_lines():
                    if line == ": stream open":
                        self.opened.set()
                    elif not line and frame:
                        self.frames.append(frame)
                        frame = {}
                    elif line and not line.startswith(":"):
                        field, _, value = line.partition(": ")
                        frame[field] = json.loads(value) if field == "data" else value
        except Exception as exc:  # the test asserts on it
            self.error = exc
        finally:
            self.opened.set()
            self.ended.set()

    def wait_open(self) -> LiveStream:
        assert self.opened.wait(30), "the stream did not open"
        assert self.status == 200 and self.error is None, (self.status, self.error)
        return self

    def close(self) -> None:
        """Hang up, as a client going away does: at once, even while the reader thread is
        blocked on the socket (a plain close would wait for the next byte to arrive)."""
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)
        self._client.close()


def refusal(url: str, headers: dict[str, str]) -> tuple[int, dict, dict]:
    """Try to open a stream: (status, JSON error or {}, headers); hangs up at once if admitted."""
    with httpx.stream("GET", url, headers=headers, timeout=30) as response:
        if response.status_code == 200:
            return 200, {}, dict(response.headers)
        return response.status_code, json.loads(response.read()), dict(response.headers)


def admitted(url: str, headers: dict[str, str]) -> bool:
    return refusal(url, headers)[0] == 200


@pytest.fixture(scope="module")
def second_web(platform_env, log_dir):
    """Another web process on the same Redis and database (a second replica)."""
    process, base_url = start_web(platform_env, log_dir, "second-web")
    yield base_url
    process.stop()


@pytest.fixture
def open_stream():
    """Opens streams that the test hangs up at its end, whatever happened."""
    streams: list[LiveStream] = []

    def open_one(url: str, headers: dict[str, str]) -> LiveStream:
        streams.append(LiveStream(url, headers))
        return streams[-1].wait_open()

    yield open_one
    for stream in streams:
        stream.close()


@pytest.fixture
def acme_session(acme, agent):
    send(acme, SESSION, "hello")
    return SESSION


def test_a_tenant_at_its_stream_cap_is_refused_on_every_web_process_and_others_still_stream(
    web, second_web, acme, globex, acme_session, model, open_stream
):
    set_limits(tenant=acme.tenant, max_concurrent_streams=2)
    first = open_stream(session_events(web), acme.headers)
    open_stream(session_events(second_web), acme.headers)

    assert acme.client.get("/api/v1/tenant").json()["usage"]["open_streams"] == 2
    for base_url in (web, second_web):
        status, body, headers = refusal(session_events(base_url), acme.headers)
        assert status == 429
        assert body["error"]["code"] == "too_many_streams"
        assert body["error"]["details"] == {"limit": 2}
        assert int(headers["retry-after"]) > 0

    # A waiting request counts too, and is refused before anything is stored.
    turns_before = Turn.objects.count()
    waited = httpx.post(
        f"{web}/api/v1/sessions/{SESSION}/messages",
        json={"content": "and now?", "wait": 5},
        headers=acme.headers,
        timeout=30,
    )
    assert waited.status_code == 429, waited.text
    assert waited.json()["error"]["code"] == "too_many_streams"
    assert Turn.objects.count() == turns_before

    # Another tenant is not held back by acme's streams.
    make_agent(globex.tenant, model)
    sent = send(globex, SESSION, "hello")
    open_stream(session_events(web), globex.headers)
    assert wait_for_turn(sent["turn"]["id"]).status == "succeeded"

    # A client that hangs up gives its slot back.
    first.close()
    wait_until(
        lambda: admitted(session_events(web), acme.headers),
        timeout=20,
        message="acme's freed slot to admit a new stream",
    )


def test_a_web_process_at_its_stream_cap_answers_503_before_its_redis_pool_runs_out(
    platform_env, log_dir, acme, acme_session, open_stream
):
    process, base_url = start_web(
        dict(platform_env, STREAMS_PER_PROCESS_MAX="1"), log_dir, "one-stream-web"
    )
    try:
        first = open_stream(session_events(base_url), acme.headers)

        status, body, headers = refusal(session_events(base_url), acme.headers)
        assert status == 503
        assert body["error"]["code"] == "service_busy"
        assert int(headers["retry-after"]) > 0

        first.close()
        wait_until(
            lambda: admitted(session_events(base_url), acme.headers),
            timeout=20,
            message="the process's freed stream to admit a new one",
        )
    finally:
        process.stop()


def blocked_readers() -> int:
    """Connections to the test Redis database blocked in XREAD now."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    db = client.connection_pool.connection_kwargs.get("db", 0)
    return sum(
        1
        for c in client.client_list()
        if c["cmd"] == "xread" and "b" in c["flags"] and int(c["db"]) == db
    )


def test_a_stream_beyond_the_redis_pool_is_refused_with_503_not_broken(
    platform_env, log_dir, acme, acme_session, open_stream
):
    """A pool smaller than the process's stream cap (a misconfiguration): the pool is the
    cap, so the second stream is refused at once, in JSON, rather than admitted to wait
    for a connection the first one holds."""
    env = dict(platform_env, REDIS_ASYNC_MAX_CONNECTIONS="1", STREAMS_PER_PROCESS_MAX="5")
    process, base_url = start_web(env, log_dir, "one-connection-web")
    blocked_before = blocked_readers()
    try:
        open_stream(session_events(base_url), acme.headers)
        wait_until(
            lambda: blocked_readers() > blocked_before,
            message="the first stream to hold the connection in XREAD",
        )

        status, body, headers = refusal(session_events(base_url), acme.headers)
        assert status == 503
        assert body["error"]["code"] == "service_busy"
        assert int(headers["retry-after"]) > 0
    finally:
        process.stop()


def test_open_streams_cannot_starve_the_rate_limit(
    platform_env, log_dir, acme, acme_session, open_stream
):
    """Streams hold their Redis connections for minutes; the rate limit has a pool of its
    own, so with every stream connection taken a key over its rate is still refused (not
    let through after waiting for a connection that never frees)."""
    env = dict(
        platform_env,
        REDIS_ASYNC_MAX_CONNECTIONS="1",
        STREAMS_PER_PROCESS_MAX="5",
        API_RATE_LIMIT="2/h",
    )
    process, base_url = start_web(env, log_dir, "one-stream-connection-web")
    blocked_before = blocked_readers()
    try:
        open_stream(session_events(base_url), acme.headers)  # the key's first request
        wait_until(
            lambda: blocked_readers() > blocked_before,
            message="the stream to hold the only stream connection in XREAD",
        )
        url = f"{base_url}/api/v1/sessions/{SESSION}/messages"
        # Four more: even if the hour turns between two of them, two are over the rate.
        answers = [
            httpx.post(url, headers=acme.headers, json={"content": f"n{i}"}, timeout=30)
            for i in range(4)
        ]
        refused = [a for a in answers if a.status_code == 429]
        assert refused, [a.status_code for a in answers]
        assert refused[0].json()["error"]["code"] == "rate_limited"
    finally:
        process.stop()


def test_the_slots_of_a_web_process_that_dies_free_themselves(
    web, platform_env, log_dir, acme, acme_session, open_stream
):
    set_limits(tenant=acme.tenant, max_concurrent_streams=1)
    process, doomed_web = start_web(
        dict(platform_env, STREAM_LEASE_SECONDS="2"), log_dir, "short-lease-web"
    )
    try:
        open_stream(session_events(doomed_web), acme.headers)
        slots = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
        [(lease, first_expiry)] = slots.zrange(
            stream_slots_key(acme.tenant.pk), 0, -1, withscores=True
        )

        # While the process lives it renews the lease, and the slot stays taken past it.
        wait_until(
            lambda: (
                (slots.zscore(stream_slots_key(acme.tenant.pk), lease) or 0) > first_expiry + 2000
            ),
            timeout=20,
            message="the stream's lease to be renewed past its first expiry",
        )
        assert refusal(session_events(web), acme.headers)[0] == 429

        process.kill()  # SIGKILL: no chance to give the slot back
        wait_until(
            lambda: admitted(session_events(web), acme.headers),
            timeout=20,
            message="the dead process's slot to free itself",
        )
    finally:
        process.stop()


@pytest.mark.parametrize(
    ("cut_off", "code"),
    [("revoke the key", "api_key_revoked"), ("suspend the tenant", "tenant_suspended")],
)
def test_revoking_the_key_or_suspending_the_tenant_ends_its_open_streams(
    web, acme, acme_session, cut_off, code, open_stream
):
    stream = open_stream(session_events(web), acme.headers)

    if cut_off == "revoke the key":
        revoke_api_key(api_key=ApiKey.objects.get(tenant=acme.tenant))
    else:
        set_limits(tenant=acme.tenant, is_active=False)

    assert stream.ended.wait(15), "the stream outlived its key"
    assert stream.error is None  # the response ended cleanly, not cut mid-frame
    last = stream.frames[-1]
    assert last["event"] == "error"
    assert last["data"]["code"] == code
    assert "id" not in last  # Last-Event-ID still names the last real event


def test_a_waiting_request_is_let_go_when_its_key_is_revoked(web, acme, acme_session, model):
    model.add_rule(match=r"slow", latency=20)
    answers: list[httpx.Response] = []

    def ask() -> None:
        answers.append(
            httpx.post(
                f"{web}/api/v1/sessions/{SESSION}/messages",
                json={"content": "slow one", "wait": 45},
                headers=acme.headers,
                timeout=60,
            )
        )

    waiting = threading.Thread(target=ask, daemon=True)
    waiting.start()
    slots = redis.Redis.from_url(settings.REDIS_URL)
    wait_until(
        lambda: slots.zcard(stream_slots_key(acme.tenant.pk)) == 1,
        message="the waiting request to hold its slot",
    )

    revoke_api_key(api_key=ApiKey.objects.get(tenant=acme.tenant))

    waiting.join(15)
    assert not waiting.is_alive(), "the request kept waiting on a revoked key"
    assert answers[0].status_code == 202  # accepted before the revocation; the turn runs on


def test_a_stream_ends_with_an_error_event_when_redis_goes_away(
    platform_env, log_dir, acme, acme_session, open_stream
):
    private_redis = RedisServer(log_dir, "stream-redis").start()
    process, base_url = start_web(
        dict(platform_env, REDIS_URL=private_redis.url), log_dir, "private-redis-web"
    )
    try:
        stream = open_stream(session_events(base_url), acme.headers)

        private_redis.kill()

        assert stream.ended.wait(60), "the stream did not end after Redis went away"
        assert stream.error is None  # a whole last frame and a clean end, no broken body
        assert stream.frames[-1]["event"] == "error"
        assert stream.frames[-1]["data"]["code"] == "events_unavailable"
    finally:
        process.stop()
        private_redis.stop()
