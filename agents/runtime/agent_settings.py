"""The agent settings a turn runs with, fixed when it starts.

An agent backed by a marketplace package follows its installation to new versions, but a
turn finishes on the version it began with, retries and resumes included: the
marketplace installs a function here (at app start) that pins the turn to its version and
gives the agent that version's settings for the run. Other agents run as they are, at no
cost: the function is asked only for agents marked `package_backed`.
"""

from __future__ import annotations

from collections.abc import Callable

from agents.models import Agent, Turn

_pin: Callable[[Turn], Agent] | None = None


def install(pin: Callable[[Turn], Agent]) -> None:
    """Make `pin(turn)` give the agent settings of package-backed turns in this process."""
    global _pin
    _pin = pin


def settle(turn: Turn) -> None:
    """Give `turn.agent` the settings the turn runs with (a package-backed turn: its
    pinned version's), in memory, before its first step."""
    if turn.agent.package_backed and _pin is not None:
        turn.agent = _pin(turn)
