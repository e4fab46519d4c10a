"""The command's options, and each scenario's sizes: full, `--quick`, or given."""

from __future__ import annotations

from dataclasses import asdict, dataclass

# In the order `all` runs them (bench.scenarios maps each to its code).
SCENARIO_NAMES = (
    "overhead",
    "concurrency",
    "tenants",
    "fairness",
    "sessions",
    "recovery",
    "elastic",
)


@dataclass(frozen=True)
class Options:
    quick: bool = False
    turns: int | None = None  # per load: overhead/tenants/sessions, fairness' flood, recovery
    load_sessions: int | None = None  # sessions the overhead load is spread over
    sessions: int | None = None  # idle sessions of the `sessions` scenario
    tenants: int | None = None
    concurrency: int | None = None
    latency: float | None = None  # model latency of concurrency, fairness and recovery
    in_flight: int | None = None
    workers: int | None = None
    worker_concurrency: int | None = None
    web_workers: int = 2
    repeat: int | None = None  # runs of each loaded throughput figure (3; quick 1)
    task_events: bool = True  # production's default (Flower); off to measure its cost
    access_log: bool = True  # uvicorn's, as compose runs it; off to measure its cost
    redis_url: str | None = None
    broker_url: str | None = None  # amqp://...; by default the run's Redis database
    json_path: str | None = None

    def pick(self, given, full, quick):
        """The size given on the command line, else the full or the quick default."""
        if given is not None:
            return given
        return quick if self.quick else full

    def as_json(self) -> dict:
        return asdict(self)
