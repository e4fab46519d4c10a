"""The load generator: light asyncio clients, timed at the client.

aiohttp for the API and the model server (httpx's async client costs 5-10 ms of CPU per
request under load and would cap the server it measures), and a Redis
pub/sub listener for bare Celery tasks. The client's own CPU time is part of every
outcome, so a reader can tell a slow server from a busy client.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

import aiohttp
import redis.asyncio as aioredis

T = TypeVar("T")
# A step returns None when it succeeded, else why it failed (counted by reason).
Step = Callable[[T], Awaitable[str | None]]


# How long a client follows a turn that did not finish within its `wait`.
FOLLOW_SECONDS = 300


@dataclass(frozen=True)
class Job:
    """One message to send: which tenant (by API key) and which session."""

    api_key: str
    session_key: str


@dataclass
class Outcome:
    latencies: list[float] = field(default_factory=list)  # seconds, successful steps
    failures: Counter = field(default_factory=Counter)
    elapsed: float = 0.0
    client_cpu: float = 0.0
    late: int = 0  # finished, but after the API's longest `wait`
    early: list[float] = field(default_factory=list)  # 202s long before `wait` ran out

    @property
    def completed(self) -> int:
        return len(self.latencies)

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    @property
    def rate(self) -> float:
        return self.completed / self.elapsed if self.elapsed else 0.0


class Progress:
    """What a runner reports to: a tqdm bar, or nothing."""

    def __init__(self, bar=None):
        self.bar = bar

    def advance(self) -> None:
        if self.bar is not None:
            self.bar.update()


async def run_lanes(lanes: list[list[T]], step: Step[T], progress: Progress) -> Outcome:
    """Run every lane at once; inside a lane, one step after the other (so a lane that
    owns some sessions keeps their messages in order)."""
    outcome = Outcome()

    async def lane(items: list[T]) -> None:
        for item in items:
            started = time.perf_counter()
            failure = await step(item)
            if failure is None:
                outcome.latencies.append(time.perf_counter() - started)
            else:
                outcome.failures[failure] += 1
            progress.advance()

    cpu, started = time.process_time(), time.perf_counter()
    await asyncio.gather(*(lane(items) for items in lanes if items))
    outcome.elapsed = time.perf_counter() - started
    outcome.client_cpu = time.process_time() - cpu
    return outcome


async def run_paced(
    items: Iterator[T],
    step: Step[T],
    *,
    interval: float,
    until: Callable[[int], bool],
    progress: Progress,
) -> Outcome:
    """Start a step every `interval` seconds, whatever the earlier ones are doing (an
    open loop, as independent users send), until `until(started_so_far)` is true."""
    outcome = Outcome()

    async def timed(item: T) -> None:
        started = time.perf_counter()
        failure = await step(item)
        if failure is None:
            outcome.latencies.append(time.perf_counter() - started)
        else:
            outcome.failures[failure] += 1
        progress.advance()

    cpu, started = time.process_time(), time.perf_counter()
    tasks: list[asyncio.Task] = []
    next_at = started
    while not until(len(tasks)):
        tasks.append(asyncio.create_task(timed(next(items))))
        next_at += interval
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
    await asyncio.gather(*tasks)
    outcome.elapsed = time.perf_counter() - started
    outcome.client_cpu = time.process_time() - cpu
    return outcome


def lanes_of(jobs: list[T], count: int) -> list[list[T]]:
    """Split jobs into `count` lanes, equal jobs (one session's messages) in the same lane."""
    lanes: list[list[T]] = [[] for _ in range(max(1, count))]
    assigned: dict[object, int] = {}
    for job in jobs:
        index = assigned.setdefault(job, len(assigned) % len(lanes))
        lanes[index].append(job)
    return lanes


def turn_jobs(sessions: list[Job], turns: int) -> list[Job]:
    """`turns` messages spread round-robin over the sessions."""
    return [sessions[i % len(sessions)] for i in range(turns)]


MESSAGES_PATH = "/api/v1/sessions/{key}/messages"


class Api:
    """The BeamClaw API over one aiohttp session with `connections` kept-alive sockets;
    `messages_path` may name the pipeline floor's URL instead of the API's."""

    def __init__(self, base_url: str, *, connections: int, messages_path: str = MESSAGES_PATH):
        self._base_url = base_url
        self._messages_path = messages_path
        self._connections = connections
        self._http: aiohttp.ClientSession | None = None
        self._count = 0
        self.late = 0  # turns that outlasted `wait` (followed on their event stream)
        self.early: list[float] = []  # seconds after which a 202 came before `wait` ran out

    async def __aenter__(self) -> Api:
        connector = aiohttp.TCPConnector(limit=self._connections, limit_per_host=0)
        timeout = aiohttp.ClientTimeout(total=120)
        self._http = aiohttp.ClientSession(self._base_url, connector=connector, timeout=timeout)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._http.close()

    async def send(self, job: Job, *, wait: float | None) -> str | None:
        """Post a message; with `wait`, success means the turn finished and succeeded."""
        self._count += 1
        body: dict = {"content": f"bench message {self._count}"}
        if wait:
            body["wait"] = wait
        headers = {"Authorization": f"Bearer {job.api_key}"}
        started = time.perf_counter()
        try:
            async with self._http.post(
                self._messages_path.format(key=job.session_key), json=body, headers=headers
            ) as response:
                data = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return f"client: {exc.__class__.__name__}"
        if response.status == 200:
            status = data["turn"]["status"]
            return None if status == "succeeded" else f"turn {status}: {data['turn']}"[:200]
        if response.status == 202:
            if not wait:
                return None
            # Not finished within the wait: keep waiting as a client would, on the turn's
            # event stream, so the latency is the turn's. A 202 well before `wait` ran out
            # is the server giving up early, which is worth knowing.
            answered_after = time.perf_counter() - started
            if answered_after < wait - 1:
                self.early.append(answered_after)
            else:
                self.late += 1
            return await self._follow(data["turn"]["id"], headers)
        code = (data.get("error") or {}).get("code") if isinstance(data, dict) else None
        return f"HTTP {response.status} {code}"

    async def _follow(self, turn_id: int, headers: dict) -> str | None:
        """The turn's event stream, up to FOLLOW_SECONDS, until `turn.finished`."""
        event = ""
        try:
            async with self._http.get(
                f"/api/v1/turns/{turn_id}/events",
                headers={**headers, "Accept": "text/event-stream"},
                # A stuck turn fails the request instead of hanging the run.
                timeout=aiohttp.ClientTimeout(total=FOLLOW_SECONDS, sock_read=None),
            ) as response:
                async for raw in response.content:
                    line = raw.decode().strip()
                    if line.startswith("event: "):
                        event = line[len("event: ") :]
                    elif line.startswith("data: ") and event == "turn.finished":
                        status = json.loads(line[len("data: ") :]).get("status")
                        return None if status == "succeeded" else f"turn {status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            return f"client: {exc.__class__.__name__}"
        return "event stream ended before turn.finished"


async def model_calls(base_url: str, count: int, progress: Progress) -> Outcome:
    """`count` simultaneous calls straight to the model server: the floor of the model."""
    connector = aiohttp.TCPConnector(limit=count, limit_per_host=0)
    body = {"model": "fake-1", "messages": [{"role": "user", "content": "hello"}]}
    async with aiohttp.ClientSession(connector=connector) as http:

        async def call(_: int) -> str | None:
            try:
                async with http.post(f"{base_url}/chat/completions", json=body) as response:
                    await response.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                return f"client: {exc.__class__.__name__}"
            return None if response.status == 200 else f"HTTP {response.status}"

        return await run_lanes([[i] for i in range(count)], call, progress)


class TaskResults:
    """Hears Celery results as the Redis result backend publishes them (one channel per
    task id), so many tasks can be awaited from one event loop without a thread each."""

    PREFIX = "celery-task-meta-"

    def __init__(self, redis_url: str):
        self._client = aioredis.from_url(redis_url)
        self._pubsub = self._client.pubsub()
        self._pending: dict[str, asyncio.Future] = {}
        self._listener: asyncio.Task | None = None

    async def __aenter__(self) -> TaskResults:
        await self._pubsub.psubscribe(f"{self.PREFIX}*")
        self._listener = asyncio.create_task(self._listen())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._listener.cancel()
        await self._pubsub.aclose()
        await self._client.aclose()

    async def _listen(self) -> None:
        async for message in self._pubsub.listen():
            if message["type"] != "pmessage":
                continue
            task_id = message["channel"].decode()[len(self.PREFIX) :]
            future = self._pending.pop(task_id, None)
            if future is not None and not future.done():
                future.set_result(None)

    async def round_trip(self, send: Callable[[str], object], timeout: float = 60) -> str | None:
        """`send(task_id)` a task, then wait for its result."""
        task_id = str(uuid.uuid4())
        future = asyncio.get_running_loop().create_future()
        self._pending[task_id] = future
        send(task_id)
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            self._pending.pop(task_id, None)
            return "no result within timeout"
        return None
