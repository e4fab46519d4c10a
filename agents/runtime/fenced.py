"""Durable writes of a turn, each guarded by the session's fencing token.

Every function here runs one transaction that starts with
`UPDATE agents_session ... WHERE id = :session AND fence = :token`: it locks the session
row, allocates sequence numbers, and matches no row when another worker has claimed the
session since, in which case nothing is written and LeaseLost is raised.
"""

from __future__ import annotations

from django.db import connection, transaction
from django.db.models import Case, F, PositiveIntegerField, Q, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from agents.models import (
    DELIVERED_SOURCES,
    ChannelDelivery,
    Message,
    MessageRole,
    Turn,
    TurnStatus,
)
from tenants.models import UsageRecord

from .lease import LeaseLost


def _take_seqs(session_id: int, fence: int, count: int) -> int:
    """Lock the session (fenced) and reserve `count` sequence numbers; return the first."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE agents_session SET last_seq = last_seq + %s, last_activity_at = %s "
            "WHERE id = %s AND fence = %s RETURNING last_seq",
            [count, timezone.now(), session_id, fence],
        )
        row = cursor.fetchone()
    if row is None:
        raise LeaseLost(f"session {session_id} is fenced past token {fence}")
    return row[0] - count + 1


def start_turn(turn: Turn, fence: int) -> bool:
    """Mark the turn running under this fence and give its user messages their places.

    False when the turn is no longer runnable (cancelled while it waited).
    """
    with transaction.atomic():
        _take_seqs(turn.session_id, fence, 0)  # lock first: a `collect` may be adding
        # An attempt is a first start or a restart after a worker died with the turn
        # `running`; resuming after a park, a hand-back or sub-agents is not a new one.
        new_attempt = Q(status=TurnStatus.RUNNING) | Q(started_at__isnull=True)
        claimed = Turn.objects.filter(
            pk=turn.pk, status__in=[TurnStatus.QUEUED, TurnStatus.RUNNING]
        ).update(
            status=TurnStatus.RUNNING,
            fence=fence,
            attempts=Case(
                When(new_attempt, then=F("attempts") + 1),
                default=F("attempts"),
                output_field=PositiveIntegerField(),
            ),
            started_at=Coalesce(F("started_at"), timezone.now()),
            waiting_reason="",  # no longer parked
            resumes_at=None,
        )
        if not claimed:
            return False
        pending = list(
            Message.objects.filter(turn=turn, seq__isnull=True, role=MessageRole.USER)
            .order_by("id")
            .values_list("id", flat=True)
        )
        if pending:
            first = _take_seqs(turn.session_id, fence, len(pending))
            for offset, message_id in enumerate(pending):
                Message.objects.filter(pk=message_id).update(seq=first + offset)
    if turn.status == TurnStatus.RUNNING or turn.started_at is None:
        turn.attempts += 1
    turn.status = TurnStatus.RUNNING
    turn.fence = fence
    return True


def append(
    turn: Turn,
    fence: int,
    messages: list[Message],
    *,
    usage: list[UsageRecord] | None = None,
    **turn_fields: object,
) -> list[Message]:
    """Write this step's messages (and turn fields such as usage) atomically.

    `usage`: the metering records of the step's model calls, written in the same
    transaction and removed from the list once committed.
    """
    with transaction.atomic():
        _write_step(turn, fence, messages, usage, turn_fields)
    _committed(turn, usage, turn_fields)
    return messages


def _write_step(
    turn: Turn,
    fence: int,
    messages: list[Message],
    usage: list[UsageRecord] | None,
    turn_fields: dict[str, object],
) -> None:
    first = _take_seqs(turn.session_id, fence, len(messages))
    for offset, message in enumerate(messages):
        message.session_id = turn.session_id
        message.turn = turn
        message.seq = first + offset
    if messages:
        Message.objects.bulk_create(messages)
    if usage:  # money: the usage records of the step's model calls
        UsageRecord.objects.bulk_create(usage)
    if turn_fields:
        Turn.objects.filter(pk=turn.pk).update(**turn_fields)


def _committed(turn: Turn, usage: list[UsageRecord] | None, turn_fields: dict[str, object]) -> None:
    if usage:
        usage.clear()
    for name, value in turn_fields.items():
        if not hasattr(value, "resolve_expression"):
            setattr(turn, name, value)


def requeue(
    turn: Turn, fence: int, *, usage: list[UsageRecord] | None = None, **turn_fields: object
) -> None:
    """Put a running turn back in the queue (its saved steps stay): it waits for a limit."""
    append(turn, fence, [], usage=usage, status=TurnStatus.QUEUED, **turn_fields)
    turn.status = TurnStatus.QUEUED


def park_queued(turn: Turn, fence: int, **waiting: object) -> bool:
    """Note on a queued turn what it waits for (`waiting_reason`, `resumes_at`) when it
    could not start; False when it is no longer queued (another worker started it)."""
    with transaction.atomic():
        _take_seqs(turn.session_id, fence, 0)
        return bool(Turn.objects.filter(pk=turn.pk, status=TurnStatus.QUEUED).update(**waiting))


def finish(
    turn: Turn,
    fence: int,
    *,
    status: str,
    error_code: str = "",
    error_message: str = "",
    messages: list[Message] | None = None,
    usage: list[UsageRecord] | None = None,
    **turn_fields: object,
) -> bool:
    """End the turn (with its final messages, if any) in one fenced transaction.

    A channel turn's reply becomes due in the same transaction, so no worker crash or
    broker outage after the commit can lose it: the reaper posts what the caller could
    not. Returns whether a reply is due now (the caller sends its trigger).
    """
    now = timezone.now()
    fields = dict(
        status=status,
        error_code=error_code,
        error_message=error_message[:2000],
        finished_at=now,
        **turn_fields,
    )
    reply_due = False
    with transaction.atomic():
        _write_step(turn, fence, messages or [], usage, fields)
        if turn.source in DELIVERED_SOURCES:  # reply: due now, sent by the caller
            reply_due = bool(
                ChannelDelivery.objects.filter(turn_id=turn.pk).update(next_attempt_at=now)
            )
    _committed(turn, usage, fields)
    return reply_due
