"""`spawn_agent`: hand a task to another agent of the same tenant, as a sub-agent."""

from __future__ import annotations

from typing import Any

from .base import Tool, ToolContext


class SpawnAgent(Tool):
    name = "spawn_agent"
    description = (
        "Give a task to another agent of your organisation. Its final answer comes back as "
        "this tool's result. Call it several times in one step to run sub-agents in parallel."
    )
    parameters = {
        "type": "object",
        "properties": {
            "agent": {"type": "string", "description": "the other agent's slug"},
            "task": {"type": "string", "description": "what it should do", "minLength": 1},
        },
        "required": ["agent", "task"],
        "additionalProperties": False,
    }
    deferred = True

    def run(self, args: dict, ctx: ToolContext) -> Any:
        from agents.runtime.children import spawn

        return spawn(ctx, agent_slug=args["agent"], task=args["task"])
