"""What a scenario works with: the platform's processes, tenants made for the run, loads
to send and the meters to read while they run."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Coroutine
from dataclasses import dataclass

from django.db.models import Max
from tqdm import tqdm

from agents import services as agent_services
from agents.models import ACTIVE_STATUSES, Turn
from tenants import services as tenant_services

from .database import BenchDatabase, delete_tenants, insert_idle_sessions, postgres_pids
from .load import MESSAGES_PATH, Api, Job, Outcome, Progress, lanes_of, run_lanes
from .measure import CpuMeter, MemorySampler, percentile
from .options import Options
from .platform import Platform
from .report import median_range, ms

# Bench tenants' limits: high enough that no tenant limit is what a load runs into.
RAISED_LIMITS = {
    "requests_per_minute": 100_000_000,
    "tokens_per_day": 10**15,
    "tokens_per_month": 10**15,
    "max_concurrent_turns": 1_000_000,
    "max_sessions": 100_000_000,
    "max_concurrent_streams": 1_000_000,
}
WAIT = 60.0  # the API's longest `wait`


@dataclass(frozen=True)
class BenchTenant:
    id: int
    slug: str
    agent_id: int
    agent_slug: str
    api_key: str

    def job(self, name: str) -> Job:
        return Job(self.api_key, f"agent:{self.agent_slug}:{name}")


class Bench:
    def __init__(
        self,
        *,
        options: Options,
        platform: Platform,
        database: BenchDatabase,
        redis_url: str,
        redis_pid: int | None,
    ):
        self.options = options
        self.platform = platform
        self.database = database
        self.redis_url = redis_url
        self.redis_pid = redis_pid
        self.slugs: set[str] = set()  # every tenant the run made, retired ones too

    # -- talking to the person running it ----------------------------------------------

    @staticmethod
    def say(text: str) -> None:
        tqdm.write(text, file=sys.stderr)

    @staticmethod
    def bar(description: str, total: int | None, unit: str = "turn") -> tqdm:
        return tqdm(
            total=total, desc=description, unit=unit, file=sys.stderr, leave=False, mininterval=0.3
        )

    # -- tenants -----------------------------------------------------------------------

    def tenant(self, slug: str, *, raised: bool = True) -> BenchTenant:
        """A tenant with one agent on the fake model server and an API key."""
        tenant = tenant_services.create_tenant(
            slug=slug, name=f"bench {slug}", **(RAISED_LIMITS if raised else {})
        )
        self.slugs.add(slug)
        agent_services.set_provider_credential(
            tenant=tenant, provider="openai", api_key="sk-bench", base_url=self.platform.model_url
        )
        agent = agent_services.create_agent(
            tenant=tenant,
            slug="bench",
            provider="openai",
            model="fake-1",
            system_prompt="You are a benchmark.",
        )
        key = tenant_services.issue_api_key(tenant=tenant, name="bench").secret
        return BenchTenant(tenant.pk, slug, agent.pk, agent.slug, key)

    def tenants(self, prefix: str, count: int) -> list[BenchTenant]:
        with self.bar(f"creating {count} tenants", count, unit="tenant") as bar:
            made = []
            for index in range(count):
                made.append(self.tenant(f"{prefix}-{index:05d}"))
                bar.update()
        return made

    def idle_sessions(self, sessions: list[tuple[BenchTenant, str]]) -> tuple[list[Job], float]:
        """Create sessions (tenant, name) without history; returns their jobs and the
        seconds the insert took."""
        rows = [(t.id, t.agent_id, t.job(name).session_key) for t, name in sessions]
        seconds = insert_idle_sessions(rows)
        return [t.job(name) for t, name in sessions], seconds

    @staticmethod
    def retire(tenants: list[BenchTenant]) -> None:
        """Delete the scenario's tenants, so the next scenario's workers poll only its own
        queues: running workers drop a deleted tenant's queue at their next reconcile
        (QUEUE_RECONCILE_SECONDS) and workers started later never consume it. Deleted,
        not suspended: workers keep consuming a suspended tenant's queue so its queued
        turns end (`tenant_suspended`) instead of waiting unread."""
        delete_tenants([t.id for t in tenants])

    # -- loads -------------------------------------------------------------------------

    def run(self, coroutine: Coroutine):
        return asyncio.run(coroutine)

    def send(
        self,
        jobs: list[Job],
        *,
        lanes: int,
        description: str,
        wait: float | None = WAIT,
        messages_path: str = MESSAGES_PATH,
    ) -> Outcome:
        """Send the jobs through the API (or the pipeline floor's URL), `lanes` at a time,
        one session's messages in order."""

        async def go() -> Outcome:
            async with Api(
                self.platform.web_url, connections=lanes, messages_path=messages_path
            ) as api:
                with self.bar(description, len(jobs)) as bar:
                    outcome = await run_lanes(
                        lanes_of(jobs, lanes),
                        lambda job: api.send(job, wait=wait),
                        Progress(bar),
                    )
                outcome.late, outcome.early = api.late, api.early
                return outcome

        outcome = self.run(go())
        self.say(f"  {description}: {summary(outcome)}")
        return outcome

    def warm_up(self, jobs: list[Job], lanes: int, messages_path: str = MESSAGES_PATH) -> None:
        """A short load first, so connection pools and caches are warm when we measure."""
        if self.options.quick:
            jobs, lanes = jobs[:3], min(lanes, 3)
        warm = self.send(jobs, lanes=lanes, description="warm-up", messages_path=messages_path)
        if warm.failed:
            self.say(f"  warm-up failures: {dict(warm.failures)}")

    def cpu_meter(self) -> CpuMeter:
        return CpuMeter(
            lambda: self.platform.component_pids(
                self.redis_pid,
                postgres_pids() if self.database.vendor == "postgresql" else [],
            )
        )

    def worker_memory(self) -> MemorySampler:
        return MemorySampler(self.platform.worker_pids)

    # -- after a load ------------------------------------------------------------------

    @staticmethod
    def last_turn_id() -> int:
        return Turn.objects.aggregate(last=Max("id"))["last"] or 0

    def unfinished(self, tenants: list[BenchTenant], timeout: float = 30.0) -> dict[str, int]:
        """Turns of these tenants still not final after up to `timeout` seconds, by status."""
        deadline = time.monotonic() + timeout
        while True:
            left = Turn.objects.filter(
                tenant_id__in=[t.id for t in tenants], status__in=ACTIVE_STATUSES
            )
            if not left.exists() or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        counts: dict[str, int] = {}
        for status in left.values_list("status", flat=True):
            counts[status] = counts.get(status, 0) + 1
        return counts


def summary(outcome: Outcome) -> str:
    text = (
        f"{outcome.completed} ok in {outcome.elapsed:.1f} s ({outcome.rate:.0f}/s), "
        f"p50 {ms(percentile(outcome.latencies, 50))} ms, "
        f"p99 {ms(percentile(outcome.latencies, 99))} ms"
    )
    if outcome.failed:
        text += f", {outcome.failed} failed: {dict(outcome.failures.most_common(3))}"
    return text


def per_unit_ms(used: dict[str, float], units: int) -> dict[str, float]:
    """CPU milliseconds per turn (or task) for each component (the bench client and the
    rest of the machine, `other`, included: the lines add up to the machine's busy time),
    wall time left out."""
    return {
        name: round(seconds * 1000 / units, 3)
        for name, seconds in used.items()
        if name != "wall" and units
    }


def _added(total: dict[str, float], used: dict[str, float]) -> None:
    for name, seconds in used.items():
        total[name] = total.get(name, 0.0) + seconds


class Repeats:
    """One loaded figure over its repeated runs: rates, pooled latencies, summed CPU."""

    def __init__(self) -> None:
        self.outcomes: list[Outcome] = []
        self.cpu: dict[str, float] = {}

    def add(self, outcome: Outcome, cpu: dict[str, float]) -> None:
        self.outcomes.append(outcome)
        _added(self.cpu, cpu)

    @property
    def rates(self) -> list[float]:
        return [round(o.rate, 1) for o in self.outcomes]

    @property
    def median_rate(self) -> float | None:
        return median_range(self.rates)[0]

    @property
    def latencies(self) -> list[float]:
        return [t for o in self.outcomes for t in o.latencies]

    @property
    def completed(self) -> int:
        return sum(o.completed for o in self.outcomes)

    @property
    def failed(self) -> int:
        return sum(o.failed for o in self.outcomes)

    def cpu_ms(self) -> dict[str, float]:
        return per_unit_ms(self.cpu, self.completed)
