"""`spawn_agent`: hand a task to another agent of the same tenant, as a sub-agent."""

from __future__ import annotations

from typing import Any

from agents.models import Turn
from agents.runtime.children import child_for
from agents.services import submit_message
from beamclaw.errors import DomainError

from .base import Tool, ToolContext, ToolError


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
        return spawn(ctx, agent_slug=args["agent"], task=args["task"])


def spawn(ctx: ToolContext, *, agent_slug: str, task: str) -> dict:
    """Start the child turn for this tool call (once: a re-run finds the same child)."""
    parent = Turn.objects.select_related("session", "tenant").get(pk=ctx.turn_id)
    if parent.session.parent_id is not None:
        raise ToolError("a sub-agent cannot start sub-agents of its own (depth is limited to 1)")
    existing = child_for(parent, ctx.tool_call_id)
    if existing is not None:
        return {"child_turn_id": existing.pk, "status": existing.status}
    number = Turn.objects.filter(parent_turn=parent).count() + 1
    try:
        submission = submit_message(
            tenant=parent.tenant,
            session_key=f"agent:{agent_slug}:sub:{parent.pk}:{number}",
            content=task,
            mode="enqueue",
            source="subagent",
            parent_turn=parent,
            parent_tool_call_id=ctx.tool_call_id,
        )
    except DomainError as exc:  # unknown agent, session limit, ...
        raise ToolError(exc.message)
    return {"child_turn_id": submission.turn.pk, "status": "started"}
