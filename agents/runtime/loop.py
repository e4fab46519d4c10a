"""Running a session's turns: take the lease, run queued turns in order, let go, re-check.

A turn is a loop of steps: build context → call the model → persist the answer → run the
tools it asked for → persist each result → repeat. Every write is fenced; every step
boundary checks for cancellation, the turn's deadline and a lost lease. Because steps are
persisted as they happen, a turn re-run after a crash resumes after its last saved step.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection

from agents.models import Message, MessageRole, Turn, TurnStatus
from agents.providers.base import ProviderError, ProviderRequest
from agents.tools import registry
from agents.tools.base import ToolContext
from beamclaw.redis import get_redis

from . import events, fenced
from .context import build_context, load_history
from .lease import Lease, LeaseLost
from .memory import SessionMemory
from .provider import provider_for
from .signals import cancel_key

log = logging.getLogger(__name__)


class StopTurn(Exception):
    """The turn ends early at a step boundary, with this status and code."""

    def __init__(self, status: str, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class TurnRun:
    turn: Turn
    lease: Lease
    deadline: float
    pending_events: list[tuple[str, dict]] = field(default_factory=list)

    def emit(self, event_type: str, data: dict | None = None) -> None:
        try:
            events.publish(self.turn, [(event_type, data or {})])
        except Exception:  # live events are best effort; the rows are the truth
            log.warning("could not publish %s for turn %s", event_type, self.turn.pk)


def run_session(session_id: int) -> None:
    """Run the session's runnable turns in order while holding its lease."""
    while True:
        lease = Lease(session_id)
        if not lease.acquire():
            return  # the holder runs our turn before it lets go
        try:
            while (turn := next_turn(session_id)) is not None:
                run_turn(turn, lease)
        except LeaseLost:
            log.warning("lost the lease on session %s; stopping", session_id)
            return
        finally:
            lease.release()
        # A turn submitted after our last look but before the release found the lease
        # taken and ended; look once more so it is not stranded.
        if next_turn(session_id) is None:
            return


def next_turn(session_id: int) -> Turn | None:
    return (
        Turn.objects.filter(
            session_id=session_id, status__in=[TurnStatus.QUEUED, TurnStatus.RUNNING]
        )
        .select_related("agent", "tenant", "session")
        .order_by("id")
        .first()
    )


def run_turn(turn: Turn, lease: Lease) -> None:
    if turn.status == TurnStatus.RUNNING and turn.attempts >= settings.TURN_MAX_ATTEMPTS:
        # It was running when its worker died, again and again: a poison turn.
        _finish(
            turn,
            lease,
            TurnStatus.FAILED,
            "worker_lost",
            f"The turn was interrupted {turn.attempts} times; giving up.",
        )
        return
    if not fenced.start_turn(turn, lease.fence):
        return  # cancelled while it waited
    run = TurnRun(turn, lease, deadline=time.monotonic() + turn.agent.turn_timeout_seconds)
    run.emit("turn.started", {"attempt": turn.attempts})
    try:
        if not turn.tenant.is_active:
            raise StopTurn(TurnStatus.FAILED, "tenant_suspended", "The tenant is suspended.")
        _loop(run)
    except StopTurn as stop:
        _finish(turn, lease, stop.status, stop.code, stop.message, run=run)
    except ProviderError as exc:
        _finish(turn, lease, TurnStatus.FAILED, exc.code, exc.message, run=run)
    except LeaseLost:
        raise
    except Exception as exc:
        log.exception("turn %s crashed", turn.pk)
        _finish(
            turn,
            lease,
            TurnStatus.FAILED,
            "internal_error",
            f"{exc.__class__.__name__}: {exc}",
            run=run,
        )


def _finish(turn, lease, status, code, message, *, run: TurnRun | None = None) -> None:
    fenced.finish(
        turn, lease.fence, status=status, error_code=code, error_message=message, **_usage(turn)
    )
    run = run or TurnRun(turn, lease, deadline=0)
    if status == TurnStatus.FAILED:
        run.emit("turn.failed", {"code": code, "message": message})
    run.emit("turn.finished", _summary(turn, status, code))


def _summary(turn: Turn, status: str, code: str = "") -> dict:
    return {
        "status": status,
        "error_code": code,
        "input_tokens": turn.input_tokens,
        "output_tokens": turn.output_tokens,
        "iterations": turn.iterations,
    }


def _check_boundary(run: TurnRun) -> None:
    run.lease.check()
    if reason := get_redis().get(cancel_key(run.turn)):
        raise StopTurn(TurnStatus.CANCELLED, reason, f"The turn was {reason}.")
    if time.monotonic() > run.deadline:
        raise StopTurn(
            TurnStatus.FAILED,
            "turn_timeout",
            f"The turn ran past its {run.turn.agent.turn_timeout_seconds} s budget.",
        )


def _release_db_connection() -> None:
    # With psycopg's pool, close() hands the connection back, so a turn waiting on the
    # model holds none (DESIGN.md); without a pool, reconnecting would cost more.
    if connection.settings_dict.get("OPTIONS", {}).get("pool") and not connection.in_atomic_block:
        connection.close()


def _loop(run: TurnRun) -> None:
    turn, agent = run.turn, run.turn.agent
    provider = provider_for(agent)
    tool_specs = registry.specs_for(agent.tools)
    while True:
        _check_boundary(run)
        history = load_history(turn.session_id)
        mine = [m for m in history if m.turn_id == turn.pk]
        last = mine[-1] if mine else None
        if last is not None and last.role == MessageRole.ASSISTANT and last.tool_calls:
            # The model asked for tools: run the ones without a saved result (on a re-run
            # after a crash, the saved ones are not run again).
            answered = {m.tool_call_id for m in mine if m.role == MessageRole.TOOL}
            pending = [c for c in last.tool_calls if c["id"] not in answered]
            if pending:
                _run_tools(run, pending, step=turn.iterations)
                continue
        elif last is not None and last.role == MessageRole.ASSISTANT:
            _succeed(run, None)
            return

        if turn.iterations >= agent.max_iterations:
            raise StopTurn(
                TurnStatus.FAILED,
                "max_iterations_exceeded",
                f"The agent did not answer within {agent.max_iterations} steps.",
            )
        request = ProviderRequest(
            model=agent.model,
            messages=build_context(agent, history),
            tools=tool_specs,
            max_tokens=agent.max_output_tokens,
            temperature=agent.temperature,
        )
        deltas = events.DeltaBuffer(run.emit)
        _release_db_connection()
        response = provider.complete(request, on_delta=deltas)
        deltas.flush()
        turn.input_tokens += response.usage.input_tokens
        turn.output_tokens += response.usage.output_tokens
        turn.iterations += 1
        _check_boundary(run)  # an interrupt during the call drops its answer (usage kept)
        message = Message(
            role=MessageRole.ASSISTANT,
            content=response.content,
            tool_calls=[
                {"id": c.id, "name": c.name, "arguments": c.arguments} for c in response.tool_calls
            ],
        )
        if response.tool_calls:
            fenced.append(turn, run.lease.fence, [message], **_usage(turn))
            continue
        _succeed(run, message)
        return


def _usage(turn: Turn) -> dict:
    return {
        "input_tokens": turn.input_tokens,
        "output_tokens": turn.output_tokens,
        "iterations": turn.iterations,
    }


def _succeed(run: TurnRun, final: Message | None) -> None:
    turn = run.turn
    fenced.finish(
        turn,
        run.lease.fence,
        status=TurnStatus.SUCCEEDED,
        messages=[final] if final else [],
        **_usage(turn),
    )
    if final is not None:
        run.emit("message.completed", {"seq": final.seq, "content": final.content})
    run.emit("turn.finished", _summary(turn, TurnStatus.SUCCEEDED))


def _run_tools(run: TurnRun, calls: list[dict], *, step: int) -> None:
    turn = run.turn
    context = ToolContext(
        tenant_id=turn.tenant_id,
        agent_id=turn.agent_id,
        session_id=turn.session_id,
        turn_id=turn.pk,
        step=step,
        memory=SessionMemory(turn.session_id),
    )
    for call in calls:
        _check_boundary(run)
        run.emit(
            "tool.started",
            {"id": call["id"], "name": call["name"], "arguments": _jsonish(call["arguments"])},
        )
        result = registry.execute(
            call["name"], call["arguments"], context, allowed=turn.agent.tools
        )
        message = Message(
            role=MessageRole.TOOL,
            content=result.content,
            tool_call_id=call["id"],
            name=call["name"],
        )
        fenced.append(turn, run.lease.fence, [message])
        run.emit(
            "tool.finished",
            {
                "id": call["id"],
                "name": call["name"],
                "ok": result.ok,
                "error_code": result.error_code,
                "content": result.content[:2000],
                "duration_ms": result.duration_ms,
            },
        )


def _jsonish(raw: str):
    try:
        return json.loads(raw)
    except (TypeError, ValueError):
        return raw
