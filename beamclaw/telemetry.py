"""One `emit(event, **metadata)` for everything worth counting; handlers do the rest.

The runtime emits plain events (`turn.started`, `provider.call`, ...); Prometheus metrics
and structured logs are handlers registered for them. A failing handler is logged and
never fails the turn that emitted, so a handler only counts and logs: nothing that must
happen (usage records, channel replies) is done here.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

Handler = Callable[[str, dict[str, Any]], None]

# The events the runtime emits, and the metadata each carries (all also carry
# tenant_id and tenant, the slug).
EVENTS = {
    "turn.started": "agent_id, agent, turn_id, session_id, attempt",
    "turn.finished": "agent_id, agent, turn_id, status, error_code, input_tokens, "
    "output_tokens, iterations, duration_s",
    "provider.call": "agent_id, agent, turn_id, provider, model, input_tokens, output_tokens, "
    "latency_s, attempts, ok, error_code",
    "tool.call": "agent_id, agent, turn_id, tool, ok, error_code, duration_ms",
    "limit.rejected": "limit (rate|budget|concurrency|sessions), turn_id or None, detail",
}

_handlers: dict[str, list[Handler]] = defaultdict(list)
ALL = "*"


def register(handler: Handler, *events: str) -> Handler:
    """Call `handler(event, metadata)` for these events (none given: every event)."""
    for event in events or (ALL,):
        if handler not in _handlers[event]:
            _handlers[event].append(handler)
    return handler


def unregister(handler: Handler) -> None:
    for handlers in _handlers.values():
        if handler in handlers:
            handlers.remove(handler)


def emit(event: str, **metadata: Any) -> None:
    for handler in (*_handlers.get(event, ()), *_handlers.get(ALL, ())):
        try:
            handler(event, metadata)
        except Exception:
            log.exception("telemetry handler %s failed on %s", handler.__name__, event)
