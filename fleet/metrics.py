"""The capacity signal at GET /metrics: beamclaw_desired_workers{shard} and its inputs."""

from __future__ import annotations

import json
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from redis import RedisError

from beamclaw.redis import get_redis

from .capacity import report_key

# The capacity report's figures per shard, for an autoscaler.
_CAPACITY_GAUGES = {
    "desired_workers": ("beamclaw_desired_workers", "Workers the shard needs (stabilised)."),
    "raw_desired_workers": (
        "beamclaw_capacity_raw_desired_workers",
        "Workers the shard needs this tick, before scale-down stabilisation.",
    ),
    "current_workers": ("beamclaw_capacity_current_workers", "Active workers of the shard."),
    "runnable": ("beamclaw_capacity_runnable_turns", "Turns that could start now."),
    "running": ("beamclaw_capacity_running_turns", "Turns running now."),
    "parked": (
        "beamclaw_capacity_parked_turns",
        "Turns held back by their tenant's cap, budget or suspension (add no workers).",
    ),
    "arrival_rate": ("beamclaw_capacity_arrival_rate", "Turns submitted per second (1 min)."),
    "service_seconds": ("beamclaw_capacity_service_seconds", "Mean seconds a turn runs."),
    "oldest_runnable_age_seconds": (
        "beamclaw_capacity_oldest_runnable_age_seconds",
        "How long the oldest runnable turn has waited.",
    ),
    "ceiling_workers": (
        "beamclaw_capacity_ceiling_workers",
        "Most workers the provider's request limit can keep busy.",
    ),
}


class CapacityMetrics:
    """The last capacity report (kept in Redis by a beat task); nothing if there is none.
    Served at /metrics (FleetConfig.ready() adds it)."""

    def collect(self) -> Iterator[Metric]:
        try:
            stored = get_redis().get(report_key())
        except RedisError:
            return
        if not stored:
            return
        shards = json.loads(stored)["shards"]
        for field, (name, documentation) in _CAPACITY_GAUGES.items():
            gauge = GaugeMetricFamily(name, documentation, labels=["shard"])
            for shard in shards:
                if shard.get(field) is not None:
                    gauge.add_metric([shard["shard"]], shard[field])
            yield gauge


# One per process: a second ready() adds nothing.
capacity_metrics = CapacityMetrics()
