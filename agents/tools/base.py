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


class ToolError(Exception):
    """A failure the model should hear about (bad input, refused URL, ...)."""


class Tool(ABC):
    name: str = ""
    description: str = ""
    parameters: dict = {"type": "object", "properties": {}}
    timeout: float = 10.0  # seconds; the registry enforces it

    @abstractmethod
    def run(self, args: dict, ctx: ToolContext) -> Any:
        """Return a JSON-serialisable result or raise ToolError."""
