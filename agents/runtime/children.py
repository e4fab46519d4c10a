"""Child turns: starting a sub-agent's turn, and the parent waiting on and resuming after them.

A turn hands tasks to other agents and waits without holding a thread. The
`spawn_agent` tool (agents.tools.subagents) starts a child turn in its own session
(`agent:<child>:sub:<parent-turn>:<n>`, linked to the parent). The parent turn then goes
to `waiting` and lets go of its worker thread, its lease and its concurrency slot; the
last child to finish wakes it (back to `queued`, re-dispatched), and it resumes with each
child's answer as that tool call's result. Depth is limited to one.
"""

from __future__ import annotations

from agents.models import FINAL_STATUSES, Turn, TurnStatus
from agents.tools.base import ToolContext, ToolError
from beamclaw.errors import DomainError

from .dispatch import dispatch_session


def child_for(parent: Turn, tool_call_id: str) -> Turn | None:
    return Turn.objects.filter(parent_turn=parent, parent_tool_call_id=tool_call_id).first()


def spawn(ctx: ToolContext, *, agent_slug: str, task: str) -> dict:
    """Start the child turn for this tool call (once: a re-run finds the same child)."""
    from agents.services import submit_message

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


def child_result(child: Turn) -> tuple[bool, str]:
    """(ok, content) of a finished child, as its parent's tool result."""
    from agents.selectors import reply_of

    if child.status == TurnStatus.SUCCEEDED:
        reply = reply_of(child)
        return True, reply.content if reply else ""
    detail = f"{child.error_code}: {child.error_message}" if child.error_code else child.status
    return False, f"error: subagent_{child.status}: {detail}"


def children_pending(parent: Turn) -> bool:
    return Turn.objects.filter(parent_turn=parent).exclude(status__in=FINAL_STATUSES).exists()


def wake_parent(child: Turn) -> None:
    """Called when a child ends: the last one puts the waiting parent back in the queue."""
    if child.parent_turn_id is None:
        return
    parent = Turn.objects.select_related("tenant").get(pk=child.parent_turn_id)
    if children_pending(parent):
        return
    woken = Turn.objects.filter(pk=parent.pk, status=TurnStatus.WAITING).update(
        status=TurnStatus.QUEUED
    )
    if woken:
        dispatch_session(parent.tenant.slug, parent.session_id)
