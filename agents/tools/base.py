"""What a tool is: a name, a JSON schema for its arguments, and `run(args, ctx)`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Protocol


class MemoryStore(Protocol):
    """Values kept per session; the runtime hands a database-backed one to tools."""

    def get(self, key: str) -> Any | None: ...

    def set(self, key: str, value: Any) -> None: ...

    def items(self) -> dict[str, Any]: ...

    def delete(self, key: str) -> None: ...


@dataclass
class ToolContext:
    tenant_id: int
    agent_id: int
    session_id: int
    turn_id: int
    step: int  # the loop iteration; (turn_id, step) is the idempotency key of side effects
    memory: MemoryStore
    tool_call_id: str = ""  # the model's id for this call; unique within the turn


class ToolError(Exception):
    """A failure the model should hear about (bad input, refused URL, ...)."""


class Tool(ABC):
    name: str = ""
    description: str = ""
    parameters: dict = {"type": "object", "properties": {}}
    timeout: float = 10.0  # seconds; the registry enforces it
    # A deferred tool only starts work (e.g. a sub-agent's turn); its result arrives
    # later and the turn waits for it without holding a worker thread.
    deferred: bool = False

    @abstractmethod
    def run(self, args: dict, ctx: ToolContext) -> Any:
        """Return a JSON-serialisable result or raise ToolError."""
