"""Whether a running turn should hand its session back at this step boundary.

The process that runs turns decides: a worker that is shutting down or being drained
answers yes, and its turns continue on another worker from their last saved step. The
worker installs its answer when it starts; anywhere else a turn never hands over.
"""

from __future__ import annotations

from collections.abc import Callable


def _never() -> bool:
    return False


_should_hand_over: Callable[[], bool] = _never


def install(predicate: Callable[[], bool]) -> None:
    """Make `predicate` the answer of should_hand_over() in this process."""
    global _should_hand_over
    _should_hand_over = predicate


def should_hand_over() -> bool:
    """Asked when a session starts running and at each step boundary."""
    return _should_hand_over()
