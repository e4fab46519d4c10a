"""Calling a tool the way the turn loop does, with a session memory that is a plain dict."""

from __future__ import annotations

import json
from typing import Any

from agents.tools import registry
from agents.tools.base import ToolContext


class DictMemory:
    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, key: str) -> Any | None:
        return self.data.get(key)

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value

    def items(self) -> dict[str, Any]:
        return dict(self.data)

    def delete(self, key: str) -> None:
        self.data.pop(key, None)


def tool_context() -> ToolContext:
    return ToolContext(
        tenant_id=1, agent_id=1, session_id=1, turn_id=1, step=0, memory=DictMemory()
    )


def call(
    name: str, args: dict | str, ctx: ToolContext, allowed: list[str] | None = None
) -> registry.ToolResult:
    """Run tool `name` with `args` (a dict, or raw text as a model may send), allowed alone
    unless `allowed` says otherwise."""
    raw = args if isinstance(args, str) else json.dumps(args)
    return registry.execute(name, raw, ctx, allowed=[name] if allowed is None else allowed)
