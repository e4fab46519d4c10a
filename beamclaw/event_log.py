"""Structured logs of telemetry events: one line per event on the `beamclaw.events` logger.

The metadata goes in the record's `extra`, so LOG_FORMAT=json (beamclaw.logging) turns each
key into a field; the text format shows it as key=value in the message. Failed model calls
and limit rejections are warnings, everything else is INFO. Event metadata holds ids,
slugs, counts and error codes, never a secret or message content: keep it that way, since
it is logged as it is.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("beamclaw.events")

# Attributes a LogRecord already has; an `extra` key among them would raise KeyError.
_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def level_of(event: str, metadata: dict[str, Any]) -> int:
    if event == "limit.rejected" or (event == "provider.call" and not metadata.get("ok")):
        return logging.WARNING
    return logging.INFO


def log_event(event: str, metadata: dict[str, Any]) -> None:
    """Telemetry handler for every event."""
    level = level_of(event, metadata)
    if not log.isEnabledFor(level):
        return
    fields = " ".join(f"{key}={value}" for key, value in metadata.items())
    extra = {f"{key}_" if key in _RESERVED else key: value for key, value in metadata.items()}
    log.log(level, "%s %s", event, fields, extra={"event": event, **extra})
