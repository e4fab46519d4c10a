"""Flags a running turn looks at between steps (set from the API, read by the worker)."""

from agents.models import Turn
from beamclaw.redis import key, row_tag


def cancel_key(turn: Turn) -> str:
    return key("turn", row_tag(turn), "cancel")
