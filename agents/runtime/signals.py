"""Flags a running turn looks at between steps (set from the API, read by the worker)."""

from beamclaw.redis import key


def cancel_key(turn_id: int) -> str:
    return key("turn", turn_id, "cancel")
