"""Running a session's turns: take the lease, run queued turns in order, let go, re-check.

A turn is a loop of steps: build context → limiter → call the model → persist the answer
→ run the tools it asked for → persist each result → repeat. Every write is fenced; every
step boundary checks for cancellation, the turn's deadline and a lost lease. Because
steps are persisted as they happen, a turn re-run after a crash resumes after its last
saved step.

The side effects are called here, not from telemetry: money (each model call's usage
record and token counts, `_bill`; the tenant's budget counters, `limits.settle`) and a
channel turn's reply (made due in the final fenced write, then sent: `_finish`).
`emit(...)` only feeds metrics and logs.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone
from redis.exceptions import RedisError

from agents.models import (
    ACTIVE_STATUSES,
    Message,
    MessageRole,
    Turn,
    TurnStatus,
    WaitingReason,
)
from agents.providers.base import ProviderError, ProviderRequest, ProviderResponse
from agents.tools import registry
from agents.tools.base import ToolContext
from beamclaw.pause_points import pause_point
from beamclaw.redis import get_redis
from beamclaw.telemetry import emit
from tenants import limits, metering
from tenants.models import UsageRecord

from . import agent_settings, children, events, fenced, handover
from .cancellation import cancel_key
from .context import build_context, estimate_tokens, load_history, tokens_for_chars
from .dispatch import dispatch_reply, dispatch_session
from .lease import Lease, LeaseLost
from .memory import SessionMemory
from .provider_choice import provider_for, saved_credential, with_credential

log = logging.getLogger(__name__)

REDIS_DOWN_RETRY_SECONDS = 5.0
# Assumed output size of a model call when the agent sets no max_output_tokens; it is
# reserved against the token budget before the call and settled after.
DEFAULT_OUTPUT_ESTIMATE = 1024


class StopTurn(Exception):
    """The turn ends early at a step boundary, with this status and code."""

    def __init__(self, status: str, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class ParkTurn(Exception):
    """The turn waits (checkpointed, back to queued) and resumes after `delay` seconds.

    With `delay=0` it is handed back: this worker is shutting down and another one
    continues the turn from its last saved step.
    """

    def __init__(self, delay: float, reason: str, *, waiting_reason: str = ""):
        super().__init__(f"{reason}; resumes in {delay:.1f}s")
        self.delay = delay
        self.reason = reason
        # Set when a tenant limit parks the turn: its readers see why it waits.
        self.waiting_reason = waiting_reason


class WaitForChildren(Exception):
    """The turn waits (status `waiting`, no thread held) for the sub-agents it started."""


@dataclass
class TurnRun:
    turn: Turn
    lease: Lease
    deadline: float
    started: float
    # Usage records of model calls not yet written; the next fenced step writes them.
    usage: list[UsageRecord] = field(default_factory=list)
    # Events that go out with the turn's next round trip to Redis (the cancel flag's read
    # at the next step boundary, or the next publish), in order, before its own.
    unsent: list[tuple[str, dict]] = field(default_factory=list)
    # The last model call's budget reservation and the tokens it used: settled with the
    # cancel flag's read right after the call.
    unsettled: list[tuple[limits.Reservation, int]] = field(default_factory=list)
    # Whether the session may hold another turn to run now (the end of the turn says).
    more_turns: bool = True

    @property
    def labels(self) -> dict:
        turn = self.turn
        return {
            "tenant_id": turn.tenant_id,
            "tenant": turn.tenant.slug,
            "agent_id": turn.agent_id,
            "agent": turn.agent.slug,
            "turn_id": turn.pk,
        }

    def emit_event(self, event_type: str, data: dict | None = None) -> None:
        self.emit_events([(event_type, data or {})])

    def emit_later(self, event_type: str, data: dict) -> None:
        """Publish the event with the turn's next round trip to Redis, which comes soon."""
        self.unsent.append((event_type, data))

    def emit_events(self, batch: list[tuple[str, dict]]) -> None:
        """Publish events (after the unsent ones) in one round trip."""
        batch, self.unsent = self.unsent + batch, []
        try:
            events.publish(self.turn, batch)
        except Exception:  # live events are best effort; the rows are the truth
            log.warning("could not publish %s for turn %s", batch[0][0], self.turn.pk)

    def read_cancel(self) -> str | None:
        """The turn's cancel flag, read in one round trip with the unsent events and the
        unsettled budget reservation."""
        batch, self.unsent = self.unsent, []
        unsettled, self.unsettled = self.unsettled, []
        pipe = get_redis().pipeline(transaction=False)
        for reservation, used in unsettled:
            limits.settle_on(pipe, reservation, used)
        events.add_to(pipe, self.turn, batch)
        pipe.get(cancel_key(self.turn))
        try:
            reason = pipe.execute(raise_on_error=False)[-1]
        except RedisError:  # Redis is down: no cancel can have been asked for meanwhile
            if unsettled:  # as limits.settle: the counters keep the estimate
                log.warning("could not settle token usage for tenant %s", self.turn.tenant_id)
            return None
        return None if isinstance(reason, Exception) else reason


def run_session(tenant_id: int, tenant_slug: str, session_id: int) -> None:
    """Run the session's runnable turns in order while holding its lease."""
    if handover.should_hand_over():
        # This worker is stopping: pass the trigger on. Held as an ETA message, it goes
        # back to the queue with the other reserved ones when this worker exits.
        dispatch_session(tenant_slug, session_id, countdown=1)
        return
    while True:
        lease = Lease(tenant_id, session_id)
        if not lease.acquire():
            return  # the holder runs our turn before it lets go
        parked = False
        resume_after: float | None = None
        try:
            turn = next_turn(session_id)
            while turn is not None:
                if not limits.acquire_slot(turn.tenant, session_id, order=turn.pk):
                    fenced.park_queued(
                        turn, lease.fence, **_parked(WaitingReason.CONCURRENCY_LIMIT)
                    )
                    emit(
                        "limit.rejected",
                        tenant_id=tenant_id,
                        tenant=turn.tenant.slug,
                        limit="concurrency",
                        turn_id=turn.pk,
                        detail=f"{turn.tenant.max_concurrent_turns} turns already running",
                    )
                    parked = True
                    break
                try:
                    more_turns = _run_with_slot(turn, lease)
                except ParkTurn as park:
                    resume_after = park.delay
                    break
                turn = next_turn(session_id) if more_turns else None
        except LeaseLost:
            log.warning("lost the lease on session %s; stopping", session_id)
            return
        finally:
            lease.release()
        if resume_after is not None:
            # Sent only now that the lease is free: sooner, the trigger could find the
            # lease still held and end, stranding the turn until the reaper.
            dispatch_session(tenant_slug, session_id, countdown=resume_after)
            return
        if parked:
            # Parked: the turn that frees a slot hands it to us and dispatches us. If
            # that happened while we still held the lease, its dispatch found the lease
            # taken and ended, so carry on ourselves.
            if limits.holds_slot(tenant_id, session_id):
                continue
            return
        # A turn submitted after our last look but before the release found the lease
        # taken and ended; look once more so it is not stranded.
        if not has_runnable_turn(session_id):
            return


def _parked(reason: str, resumes_in: float | None = None) -> dict:
    """The turn fields that let its readers (the API) see that a tenant limit holds it,
    and until when (a concurrency wait has no known end); starting the turn clears them."""
    resumes_at = None if resumes_in is None else timezone.now() + timedelta(seconds=resumes_in)
    return {"waiting_reason": reason, "resumes_at": resumes_at}


def _note_rate_parked(turn: Turn, resumes_in: float) -> None:
    try:  # only for the tenant's view (`parked_sessions`)
        limits.note_rate_parked(turn.tenant_id, turn.session_id, resumes_in=resumes_in)
    except RedisError:
        log.warning("could not count session %s as parked", turn.session_id)


def _run_with_slot(turn: Turn, lease: Lease) -> bool:
    lease.slot_key = limits.slots_key(turn.tenant_id)
    try:
        return run_turn(turn, lease)
    finally:
        lease.slot_key = None
        try:
            handed_to = limits.release_slot(turn.tenant, turn.session_id)
        except RedisError:  # the slot expires by itself; the reaper wakes parked turns
            log.warning("could not release a slot of tenant %s", turn.tenant_id)
        else:
            if handed_to is not None:
                dispatch_session(turn.tenant.slug, handed_to)


def next_turn(session_id: int) -> Turn | None:
    """The session's oldest unfinished turn, if it can run now (a waiting one blocks)."""
    turn = (
        with_credential(Turn.objects.filter(session_id=session_id, status__in=ACTIVE_STATUSES))
        .select_related("agent", "tenant", "session")
        .order_by("id")
        .first()
    )
    return None if turn is None or turn.status == TurnStatus.WAITING else turn


def has_runnable_turn(session_id: int) -> bool:
    """Whether next_turn() would find a turn; a light query (no joins) for the re-checks,
    which usually find nothing."""
    status = (
        Turn.objects.filter(session_id=session_id, status__in=ACTIVE_STATUSES)
        .order_by("id")
        .values_list("status", flat=True)
        .first()
    )
    return status is not None and status != TurnStatus.WAITING


def run_turn(turn: Turn, lease: Lease) -> bool:
    """Run the turn; returns whether the session may have another turn to run now."""
    # Each model call's usage record rides along with the turn's next fenced write; any a
    # turn could not write that way (lease lost, crash) are saved here.
    usage: list[UsageRecord] = []
    try:
        return _run_turn(turn, lease, usage)
    finally:
        metering.save_unwritten(usage)  # money: the usage no fenced step could write


def _run_turn(turn: Turn, lease: Lease, usage: list[UsageRecord]) -> bool:
    if turn.status == TurnStatus.RUNNING and turn.attempts >= settings.TURN_MAX_ATTEMPTS:
        # It was running when its worker died, again and again: a poison turn.
        run = TurnRun(turn, lease, deadline=0, started=time.monotonic(), usage=usage)
        _finish(
            run,
            TurnStatus.FAILED,
            "worker_lost",
            f"The turn was interrupted {turn.attempts} times; giving up.",
        )
        return run.more_turns
    if not fenced.start_turn(turn, lease.fence):
        return True  # cancelled while it waited
    agent_settings.settle(turn)
    now = time.monotonic()
    run = TurnRun(
        turn, lease, deadline=now + turn.agent.turn_timeout_seconds, started=now, usage=usage
    )
    run.emit_later("turn.started", {"attempt": turn.attempts})  # the first boundary sends it
    emit("turn.started", **run.labels, session_id=turn.session_id, attempt=turn.attempts)
    try:
        if not turn.tenant.is_active:
            raise StopTurn(TurnStatus.FAILED, "tenant_suspended", "The tenant is suspended.")
        _loop(run)
    except StopTurn as stop:
        _finish(run, stop.status, stop.code, stop.message)
    except ProviderError as exc:
        _finish(run, TurnStatus.FAILED, exc.code, exc.message)
    except WaitForChildren:
        return True
    except ParkTurn as park:
        waiting = _parked(park.waiting_reason, park.delay) if park.waiting_reason else {}
        fenced.requeue(turn, lease.fence, usage=run.usage, **_usage(turn), **waiting)
        if park.waiting_reason == WaitingReason.RATE_LIMITED:
            _note_rate_parked(turn, park.delay)
        log.info("turn %s %s", turn.pk, park)
        raise
    except LeaseLost:
        raise
    except Exception:
        # The exception's text may hold internals (SQL, paths, hosts): it goes to the log,
        # and the tenant gets a reference to quote to the operator.
        reference = uuid.uuid4().hex[:12]
        log.exception("turn %s crashed (reference %s)", turn.pk, reference)
        _finish(
            run,
            TurnStatus.FAILED,
            "internal_error",
            f"The turn failed on an internal error (reference {reference}).",
        )
    return run.more_turns


def _usage(turn: Turn) -> dict:
    return {
        "input_tokens": turn.input_tokens,
        "output_tokens": turn.output_tokens,
        "iterations": turn.iterations,
    }


def _finish(
    run: TurnRun, status: str, code: str = "", message: str = "", final: Message | None = None
) -> None:
    turn = run.turn
    finished = fenced.finish(
        turn,
        run.lease.fence,
        status=status,
        error_code=code,
        error_message=message,
        messages=[final] if final else [],
        usage=run.usage,
        **_usage(turn),
    )
    pause_point("turn.committed")
    # Reply: fenced.finish made a channel turn's reply due in its commit; this sends it.
    run.more_turns = finished.more_turns
    if finished.reply_due:
        # If this trigger is lost (the broker is down, or this worker dies first), the
        # reaper sends another: the reply was made due in the commit above.
        dispatch_reply(turn.tenant.slug, turn.pk)
    batch = []
    if final is not None:
        batch.append(("message.completed", {"seq": final.seq, "content": final.content}))
    if status == TurnStatus.FAILED:
        batch.append(("turn.failed", {"code": code, "message": message}))
    summary = {"status": status, "error_code": code, **_usage(turn)}
    batch.append((events.TERMINAL_EVENT, summary))
    run.emit_events(batch)
    emit("turn.finished", **run.labels, **summary, duration_s=time.monotonic() - run.started)
    children.wake_parent(turn)


def _check_boundary(run: TurnRun, *, hand_back: bool = True) -> None:
    """Between steps: a lost lease stops, a cancel ends the turn, a drain hands it back."""
    reason = run.read_cancel()  # first: what it sends must go out even if the lease is lost
    run.lease.check()
    if reason:
        raise StopTurn(TurnStatus.CANCELLED, reason, f"The turn was {reason}.")
    if hand_back and handover.should_hand_over():
        raise ParkTurn(0, "handed back by a worker shutting down")
    if time.monotonic() > run.deadline:
        raise _turn_timeout(run)


def _turn_timeout(run: TurnRun) -> StopTurn:
    return StopTurn(
        TurnStatus.FAILED,
        "turn_timeout",
        f"The turn ran past its {run.turn.agent.turn_timeout_seconds} s budget.",
    )


def _release_db_connection() -> None:
    # With psycopg's pool, close() hands the connection back, so a turn waiting on the
    # model holds none; without a pool, reconnecting would cost more.
    if connection.settings_dict.get("OPTIONS", {}).get("pool") and not connection.in_atomic_block:
        connection.close()


def _loop(run: TurnRun) -> None:
    turn, agent = run.turn, run.turn.agent
    provider = provider_for(agent, saved_credential(turn))
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
            _finish(run, TurnStatus.SUCCEEDED)  # answered before a crash; just close it
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
        response = _call_model(run, provider, request)
        # An interrupt during the call drops its answer (usage kept); a drain keeps it
        # and hands the turn back at the next boundary.
        _check_boundary(run, hand_back=False)
        message = Message(
            role=MessageRole.ASSISTANT,
            content=response.content,
            tool_calls=[
                {"id": c.id, "name": c.name, "arguments": c.arguments} for c in response.tool_calls
            ],
        )
        if not response.tool_calls:
            _finish(run, TurnStatus.SUCCEEDED, final=message)
            return
        fenced.append(turn, run.lease.fence, [message], usage=run.usage, **_usage(turn))


def _call_model(run: TurnRun, provider, request: ProviderRequest) -> ProviderResponse:
    """One model call behind the limiter: every attempt (retries too) is admitted first."""
    turn = run.turn
    input_estimate = sum(estimate_tokens(m.content) for m in request.messages)
    estimate = input_estimate + (request.max_tokens or DEFAULT_OUTPUT_ESTIMATE)
    reservations: list[limits.Reservation] = []

    def admit(attempt: int) -> None:
        while True:
            try:
                reservations.append(limits.admit_call(turn.tenant, estimate))
                return
            except limits.BudgetExceeded as exc:
                emit("limit.rejected", **run.labels, limit="budget", detail=exc.message)
                raise StopTurn(TurnStatus.FAILED, exc.code, exc.message)
            except limits.RateLimited as exc:
                emit("limit.rejected", **run.labels, limit="rate", detail=exc.message)
                if exc.retry_after > settings.RATE_LIMIT_INLINE_WAIT_SECONDS:
                    raise ParkTurn(
                        exc.retry_after,
                        "over the request rate",
                        waiting_reason=WaitingReason.RATE_LIMITED,
                    )
                time.sleep(exc.retry_after)  # short: cheaper than a round trip via the queue
                _check_boundary(run)
            except RedisError:
                # No limiter, no call: wait for Redis (the reaper re-sends the trigger if
                # the broker, the same Redis, is down too).
                raise ParkTurn(REDIS_DOWN_RETRY_SECONDS, "Redis is unreachable")

    deltas = events.DeltaBuffer(run.emit_event)
    _release_db_connection()
    started = time.monotonic()
    call = {"provider": provider.name, "model": request.model}
    try:
        # The turn's deadline holds inside the call too, not only between steps.
        response = provider.complete(
            request, on_delta=deltas, before_attempt=admit, deadline=run.deadline
        )
    except ProviderError as exc:
        deltas.flush()  # what streamed out is shown, as it is billed
        # Money: text already streamed out was delivered, so the cut-short call is billed
        # by estimate and its reservation settled with that.
        charged = _charge_partial_output(run, provider, request, exc, input_estimate)
        for reservation in reservations[: len(reservations) - bool(charged)]:
            limits.settle(reservation, 0)
        if charged:
            limits.settle(reservations[-1], charged.input_tokens + charged.output_tokens)
        emit(
            "provider.call",
            **run.labels,
            **call,
            input_tokens=charged.input_tokens if charged else 0,
            output_tokens=charged.output_tokens if charged else 0,
            latency_s=time.monotonic() - started,
            attempts=len(reservations),
            ok=False,
            error_code=exc.code,
        )
        if time.monotonic() >= run.deadline:
            raise _turn_timeout(run) from exc
        raise
    except BaseException:
        for reservation in reservations:
            limits.settle(reservation, 0)
        raise
    deltas.flush(run.emit_later)  # with the cancel check right after the call
    # Money: the tenant's budget counters are settled with what the call used, and the
    # call is billed (its usage record rides along with the next fenced step).
    used = response.usage.input_tokens + response.usage.output_tokens
    for reservation in reservations[:-1]:
        limits.settle(reservation, 0)  # failed attempts used nothing we are billed for
    turn.iterations += 1
    _bill(run, provider, request, response.usage.input_tokens, response.usage.output_tokens)
    emit(
        "provider.call",
        **run.labels,
        **call,
        input_tokens=response.usage.input_tokens,
        output_tokens=response.usage.output_tokens,
        latency_s=time.monotonic() - started,
        attempts=response.attempts,
        ok=True,
        error_code="",
    )
    # Settled by the step boundary that follows the call at once (with its one round trip).
    run.unsettled.append((reservations[-1], used))
    return response


def _charge_partial_output(
    run: TurnRun, provider, request: ProviderRequest, error: ProviderError, input_tokens: int
) -> UsageRecord | None:
    """The usage record of a call that failed after streaming text (by the deadline, the
    size cap or a broken stream), estimated from what went out; None if nothing did."""
    if not error.partial_output_chars:
        return None
    output_tokens = tokens_for_chars(error.partial_output_chars)
    return _bill(run, provider, request, input_tokens, output_tokens)


def _bill(
    run: TurnRun, provider, request: ProviderRequest, input_tokens: int, output_tokens: int
) -> UsageRecord:
    """Money: the call goes on the ledger in the transaction of the turn's next fenced step
    (for a failing turn, the one that records its failure), and counts on the turn."""
    turn = run.turn
    record = metering.usage_record(
        tenant_id=turn.tenant_id,
        agent_id=turn.agent_id,
        turn_id=turn.pk,
        provider=provider.name,
        model=request.model,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
    )
    turn.input_tokens += input_tokens
    turn.output_tokens += output_tokens
    run.usage.append(record)
    return record


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
    waiting = False
    for call in calls:
        _check_boundary(run)
        tool = registry.get(call["name"])
        deferred = tool is not None and tool.deferred and call["name"] in turn.agent.tools
        if deferred and (child := children.child_for(turn, call["id"])) is not None:
            if not child.is_final:
                waiting = True
                continue
            ok, content = children.child_result(child)
            _save_tool_result(run, call, ok, content, "" if ok else "subagent_failed", 0)
            continue
        run.emit_event(
            "tool.started",
            {"id": call["id"], "name": call["name"], "arguments": _jsonish(call["arguments"])},
        )
        result = registry.execute(
            call["name"],
            call["arguments"],
            replace(context, tool_call_id=call["id"]),
            allowed=turn.agent.tools,
        )
        if deferred and result.ok:
            waiting = True  # started; its result is saved when the child finishes
            continue
        _save_tool_result(
            run, call, result.ok, result.content, result.error_code or "", result.duration_ms
        )
    if waiting:
        _wait_for_children(run)


def _save_tool_result(
    run: TurnRun, call: dict, ok: bool, content: str, error_code: str, duration_ms: int
) -> None:
    message = Message(
        role=MessageRole.TOOL, content=content, tool_call_id=call["id"], name=call["name"]
    )
    fenced.append(run.turn, run.lease.fence, [message], usage=run.usage)
    run.emit_event(
        "tool.finished",
        {
            "id": call["id"],
            "name": call["name"],
            "ok": ok,
            "error_code": error_code or None,
            "content": content[:2000],
            "duration_ms": duration_ms,
        },
    )
    emit(
        "tool.call",
        **run.labels,
        tool=call["name"],
        ok=ok,
        error_code=error_code,
        duration_ms=duration_ms,
    )


def _wait_for_children(run: TurnRun) -> None:
    """Go to `waiting` unless every child already finished (then just carry on)."""
    turn = run.turn
    fenced.append(
        turn, run.lease.fence, [], usage=run.usage, status=TurnStatus.WAITING, **_usage(turn)
    )
    if children.children_pending(turn):
        run.emit_event("turn.waiting", {"reason": "sub-agents"})
        raise WaitForChildren()
    # The last child finished before we were waiting, so it could not wake us: take the
    # turn back ourselves unless a wake-up got there first.
    taken_back = Turn.objects.filter(pk=turn.pk, status=TurnStatus.WAITING).update(
        status=TurnStatus.RUNNING
    )
    if not taken_back:
        raise WaitForChildren()  # woken and re-queued: the session loop runs it again
    turn.status = TurnStatus.RUNNING


def _jsonish(raw: str):
    try:
        return json.loads(raw)
    except (TypeError, ValueError):
        return raw
