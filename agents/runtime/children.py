"""Child turns: a parent turn waiting on its sub-agents' turns and resuming after them.

A turn hands tasks to other agents and waits without holding a thread. The
`spawn_agent` tool (agents.tools.subagents) starts a child turn in its own session
(`agent:<child>:sub:<parent-turn>:<n>`, linked to the parent). The parent turn then goes
to `waiting` and lets go of its worker thread, its lease and its concurrency slot; the
last child to finish wakes it (back to `queued`, re-dispatched), and it resumes with each
child's answer as that tool call's result. Depth is limited to one.
"""

from __future__ import annotations

from agents.models import FINAL_STATUSES, Turn, TurnStatus
from agents.selectors import reply_of

from .dispatch import dispatch_session


def child_for(parent: Turn, tool_call_id: str) -> Turn | None:
    return Turn.objects.filter(parent_turn=parent, parent_tool_call_id=tool_call_id).first()


def child_result(child: Turn) -> tuple[bool, str]:
    """(ok, content) of a finished child, as its parent's tool result."""
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
