"""Named points where a process can be told to stop dead, so a test can kill it there.

`BEAMCLAW_PAUSE_AT=turn.committed` (a comma-separated list) makes the process block for
good when it reaches `pause_point("turn.committed")`: the crash tests SIGKILL a worker at
that exact moment. Unset, as in production, a pause point costs a set lookup.
"""

from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger(__name__)

PAUSE_AT = frozenset(
    name.strip() for name in os.environ.get("BEAMCLAW_PAUSE_AT", "").split(",") if name.strip()
)


def pause_point(name: str) -> None:
    """Block this thread forever if BEAMCLAW_PAUSE_AT names this point."""
    if name in PAUSE_AT:
        log.warning("paused at %s (BEAMCLAW_PAUSE_AT): waiting to be killed", name)
        threading.Event().wait()
