"""Prometheus metrics fed by telemetry events, served at `GET /metrics`.

Several processes record them (the web server, every worker), so prometheus_client runs in
multiprocess mode: each process writes its samples to its own files in
PROMETHEUS_MULTIPROC_DIR, and `/metrics` adds up the files of every process, dead or alive
(a counter keeps what a dead process counted; `turns_running` counts live processes only).
settings.py exports the variable before anything imports prometheus_client, and whoever
starts the platform empties the directory first (`reset_multiprocess_dir()`; scripts/dev.py
does). The sum covers the processes that share the directory: those of one host, or of
several hosts or containers that mount one volume there (files are named by host and pid,
so they never collide). A worker on a host of its own needs the directory shared with a
web process to be seen, or a scrape of its own.

`/metrics` is an operator endpoint with no tenant auth: firewall it, or set METRICS_TOKEN
to require `Authorization: Bearer <token>`.

Labels stay few: tenant slugs (one per tenant), statuses, providers, tool names from the
registry (`unknown` otherwise) and models from settings.MODEL_PRICES (`other` otherwise,
since a tenant may type any model name). Never a turn, session or agent id.
"""

from __future__ import annotations

import atexit
import hmac
import os
import re
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from celery import signals
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_safe
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.metrics_core import Metric

from beamclaw.errors import error_body

PREFIX = "beamclaw_"
# Multiprocess files are named `<kind>_<process id>.db`; the collector splits names on "_".
_HOST = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname())


def _process_id() -> str:
    # Host and pid: containers sharing the directory each have their own pid 1.
    return f"{_HOST}-{os.getpid()}"


if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    # Chosen here rather than by prometheus_client at its import: this also repairs a
    # process that imported the client before settings exported the directory.
    values.ValueClass = values.MultiProcessValue(_process_id)
    # A live gauge left by a dead process with this recycled pid is not ours to continue.
    multiprocess.mark_process_dead(_process_id())
    atexit.register(lambda: multiprocess.mark_process_dead(_process_id()))


# --- The metrics -----------------------------------------------------------------------

TURN_SECONDS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, float("inf"))
CALL_SECONDS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, float("inf"))

TURNS_STARTED = Counter(
    "beamclaw_turns_started",
    "Turns started (a turn that resumes or is re-run counts again).",
    ["tenant"],
)
TURNS_FINISHED = Counter("beamclaw_turns_finished", "Turns finished.", ["tenant", "status"])
TURN_DURATION = Histogram(
    "beamclaw_turn_duration_seconds",
    "Wall-clock time of a turn's last run, start to finish.",
    ["status"],
    buckets=TURN_SECONDS,
)
TURNS_RUNNING = Gauge(
    "beamclaw_turns_running",
    "Turns running now, in live processes.",
    ["tenant"],
    multiprocess_mode="livesum",
)
PROVIDER_CALLS = Counter(
    "beamclaw_provider_calls",
    "Model calls (retries of one call included in it).",
    ["provider", "model", "ok"],
)
PROVIDER_LATENCY = Histogram(
    "beamclaw_provider_latency_seconds",
    "Time of a model call, retries and backoff included.",
    ["provider", "model"],
    buckets=CALL_SECONDS,
)
TOKENS = Counter("beamclaw_tokens", "Model tokens used.", ["tenant", "direction"])
TOOL_CALLS = Counter("beamclaw_tool_calls", "Tool calls.", ["tool", "ok"])
LIMIT_REJECTIONS = Counter(
    "beamclaw_limit_rejections",
    "Requests held back or refused by a tenant limit.",
    ["tenant", "limit"],
)


def _ok(value: object) -> str:
    return "true" if value else "false"


def _model_label(model: str) -> str:
    from tenants.metering import price_key  # here: this module loads before the models

    return price_key(model) or "other"


def _tool_label(metadata: dict[str, Any]) -> str:
    # `unknown_tool` means the model named a tool that is not registered (or not allowed):
    # any string the model makes up, so not a label.
    return "unknown" if metadata.get("error_code") == "unknown_tool" else metadata["tool"]


# `turns_running` is raised when a turn starts and lowered when it finishes, but a turn can
# also leave its thread without finishing (parked by a limit, waiting for sub-agents, lease
# lost). So each thread remembers the turn it runs, and the end of the Celery task that ran
# it lowers the gauge if `turn.finished` did not.
_running = threading.local()


def _stop_running(**_: Any) -> None:
    tenant = getattr(_running, "tenant", None)
    if tenant is not None:
        TURNS_RUNNING.labels(tenant).dec()
        _running.tenant = _running.turn_id = None


signals.task_postrun.connect(_stop_running, weak=False)
signals.worker_process_shutdown.connect(
    lambda **_: multiprocess.mark_process_dead(_process_id()), weak=False
)


def _turn_started(m: dict[str, Any]) -> None:
    _stop_running()  # the thread's previous turn left without finishing
    TURNS_STARTED.labels(m["tenant"]).inc()
    TURNS_RUNNING.labels(m["tenant"]).inc()
    _running.tenant, _running.turn_id = m["tenant"], m.get("turn_id")


def _turn_finished(m: dict[str, Any]) -> None:
    TURNS_FINISHED.labels(m["tenant"], m["status"]).inc()
    TURN_DURATION.labels(m["status"]).observe(m.get("duration_s") or 0)
    if getattr(_running, "turn_id", None) == m.get("turn_id"):
        _stop_running()


def _provider_call(m: dict[str, Any]) -> None:
    model = _model_label(m["model"])
    PROVIDER_CALLS.labels(m["provider"], model, _ok(m.get("ok"))).inc()
    PROVIDER_LATENCY.labels(m["provider"], model).observe(m.get("latency_s") or 0)
    TOKENS.labels(m["tenant"], "in").inc(m.get("input_tokens") or 0)
    TOKENS.labels(m["tenant"], "out").inc(m.get("output_tokens") or 0)


def _tool_call(m: dict[str, Any]) -> None:
    TOOL_CALLS.labels(_tool_label(m), _ok(m.get("ok"))).inc()


def _limit_rejected(m: dict[str, Any]) -> None:
    LIMIT_REJECTIONS.labels(m["tenant"], m["limit"]).inc()


_RECORDERS: dict[str, Callable[[dict[str, Any]], None]] = {
    "turn.started": _turn_started,
    "turn.finished": _turn_finished,
    "provider.call": _provider_call,
    "tool.call": _tool_call,
    "limit.rejected": _limit_rejected,
}


def observe(event: str, metadata: dict[str, Any]) -> None:
    """Telemetry handler for every event: update the metrics it concerns."""
    if record := _RECORDERS.get(event):
        record(metadata)


# --- Serving them ----------------------------------------------------------------------


class _OwnMetrics:
    """The multiprocess files' metrics named beamclaw_*: a library in one of our processes
    (Flower, say) may write its own metrics to the same directory."""

    def __init__(self, path: Path):
        self._files = multiprocess.MultiProcessCollector(None, str(path))

    def collect(self) -> Iterator[Metric]:
        return (metric for metric in self._files.collect() if metric.name.startswith(PREFIX))


# Collectors that apps add when they start (their ready()), served with every scrape.
_app_collectors: list[Any] = []


def add_collector(collector: Any) -> None:
    """Serve `collector`'s metrics (an object with collect()) at /metrics too."""
    if collector not in _app_collectors:
        _app_collectors.append(collector)


def render() -> bytes:
    """Every process's metrics, summed, and the apps' own collectors (the capacity signal),
    in the Prometheus text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_OwnMetrics(settings.PROMETHEUS_MULTIPROC_DIR))
    for collector in _app_collectors:
        registry.register(collector)
    return generate_latest(registry)


def reset_multiprocess_dir(path: str | Path | None = None) -> Path:
    """Empty (or create) the multiprocess directory. Call it before the platform's processes
    start, never while they run: a dead process's files would be counted forever, and a new
    process whose pid was used before would carry on from the old values."""
    directory = Path(path or os.environ["PROMETHEUS_MULTIPROC_DIR"])
    directory.mkdir(parents=True, exist_ok=True)
    for file in directory.glob("*.db"):
        file.unlink(missing_ok=True)
    return directory


def _refused(status: int, code: str, message: str) -> JsonResponse:
    response = JsonResponse(error_body(code, message), status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
    return response


@require_safe
def metrics_view(request: HttpRequest) -> HttpResponse:
    """GET /metrics for Prometheus: needs `Authorization: Bearer <METRICS_TOKEN>`; without a
    token configured it answers only with DEBUG on or METRICS_PUBLIC=1 (tenant names and
    load are not for everyone)."""
    if not settings.METRICS_TOKEN and not (settings.DEBUG or settings.METRICS_PUBLIC):
        return _refused(
            403,
            "metrics_not_configured",
            "Metrics are served only with a token: the operator sets METRICS_TOKEN "
            "(or METRICS_PUBLIC=1 to serve them without one).",
        )
    if token := settings.METRICS_TOKEN:
        scheme, _, supplied = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not supplied:
            return _refused(
                401, "authentication_required", "Send 'Authorization: Bearer <metrics token>'."
            )
        if not hmac.compare_digest(supplied.strip().encode(), token.encode()):
            return _refused(401, "invalid_metrics_token", "Wrong metrics token.")
    return HttpResponse(render(), content_type=CONTENT_TYPE_LATEST)
