"""Cancelling a running turn: a flag in Redis, set from the API and read by the worker
between steps."""

from agents.models import Turn
from beamclaw.redis import key, row_tag


def cancel_key(turn: Turn) -> str:
    return key("turn", row_tag(turn), "cancel")
