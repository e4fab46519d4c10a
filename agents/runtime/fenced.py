"""Durable writes of a turn, each guarded by the session's fencing token.

Every function here runs one transaction that starts with
`UPDATE agents_session ... WHERE id = :session AND fence = :token`: it locks the session
row, allocates sequence numbers, and matches no row when another worker has claimed the
session since, in which case nothing is written and LeaseLost is raised.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models import Case, F, PositiveIntegerField, Q, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from agents.models import (
    ACTIVE_STATUSES,
    DELIVERED_SOURCES,
    ChannelDelivery,
    Message,
    MessageRole,
    Turn,
    TurnStatus,
)
from tenants.models import UsageRecord

from .lease import LeaseLost

_LOCK_SESSION = (
    "UPDATE agents_session SET last_seq = last_seq + %s, last_activity_at = %s "
    "WHERE id = %s AND fence = %s RETURNING last_seq"
)
# The same, and whether the session holds an unfinished turn besides this one: read with
# the lock, it spares the session loop a query after most turns.
_LOCK_SESSION_LOOKING_AHEAD = _LOCK_SESSION + (
    ", EXISTS (SELECT 1 FROM agents_turn WHERE session_id = %s AND id <> %s AND status IN ("
    + ", ".join(f"'{status}'" for status in ACTIVE_STATUSES)
    + "))"
)


def _lock_session(session_id: int, fence: int, *, take: int = 0) -> int:
    """Lock the session (fenced) and reserve `take` sequence numbers; return its last_seq."""
    return _locked(_LOCK_SESSION, [take, timezone.now(), session_id, fence], session_id, fence)[0]


def _locked(sql: str, params: list, session_id: int, fence: int) -> tuple:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        raise LeaseLost(f"session {session_id} is fenced past token {fence}")
    return row


def _take_seqs(session_id: int, fence: int, count: int) -> int:
    """Lock the session (fenced) and reserve `count` sequence numbers; return the first."""
    return _lock_session(session_id, fence, take=count) - count + 1


def start_turn(turn: Turn, fence: int) -> bool:
    """Mark the turn running under this fence and give its user messages their places.

    False when the turn is no longer runnable (cancelled while it waited).
    """
    with transaction.atomic():
        last_seq = _lock_session(turn.session_id, fence)  # first: a `collect` may be adding
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
        _number_user_messages(turn, fence, last_seq)
    if turn.status == TurnStatus.RUNNING or turn.started_at is None:
        turn.attempts += 1
    turn.status = TurnStatus.RUNNING
    turn.fence = fence
    return True


# The turn's unnumbered user messages take the next places, in arrival order, and the
# session's counter moves past them: one statement, however many messages a `collect`
# gathered. It runs after the session row is locked, so it sees every message committed
# before the lock (a statement's snapshot is taken when it starts).
_NUMBER_USER_MESSAGES = """
WITH pending AS (
    SELECT id, row_number() OVER (ORDER BY id) AS place
    FROM agents_message
    WHERE turn_id = %(turn)s AND seq IS NULL AND role = %(role)s
), numbered AS (
    UPDATE agents_message SET seq = %(last_seq)s + pending.place
    FROM pending WHERE agents_message.id = pending.id
    RETURNING 1
)
UPDATE agents_session SET last_seq = last_seq + (SELECT count(*) FROM numbered)
WHERE id = %(session)s AND fence = %(fence)s
"""


def _number_user_messages(turn: Turn, fence: int, last_seq: int) -> None:
    """Give the turn's user messages their places; the session row is locked (fenced)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                _NUMBER_USER_MESSAGES,
                {
                    "turn": turn.pk,
                    "role": MessageRole.USER.value,
                    "last_seq": last_seq,
                    "session": turn.session_id,
                    "fence": fence,
                },
            )
        return
    # SQLite (development) has no UPDATE inside WITH: the same, a statement per message.
    pending = list(
        Message.objects.filter(turn=turn, seq__isnull=True, role=MessageRole.USER)
        .order_by("id")
        .values_list("id", flat=True)
    )
    if pending:
        first = _take_seqs(turn.session_id, fence, len(pending))
        for offset, message_id in enumerate(pending):
            Message.objects.filter(pk=message_id).update(seq=first + offset)


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
    *,
    look_ahead: bool = False,
) -> bool:
    """Returns whether the session may hold another unfinished turn (always True unless
    `look_ahead` asked the database)."""
    lock = [len(messages), timezone.now(), turn.session_id, fence]
    if look_ahead:
        sql, params = _LOCK_SESSION_LOOKING_AHEAD, [*lock, turn.session_id, turn.pk]
    else:
        sql, params = _LOCK_SESSION, lock
    row = _locked(sql, params, turn.session_id, fence)
    first = row[0] - len(messages) + 1
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
    return bool(row[1]) if look_ahead else True


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
        _lock_session(turn.session_id, fence)
        return bool(Turn.objects.filter(pk=turn.pk, status=TurnStatus.QUEUED).update(**waiting))


@dataclass(frozen=True)
class Finished:
    # A channel turn's reply became due: the caller sends its trigger.
    reply_due: bool
    # The session held another unfinished turn when this one ended. False is a snapshot:
    # a turn submitted since is found by the session loop's look after it lets go.
    more_turns: bool


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
) -> Finished:
    """End the turn (with its final messages, if any) in one fenced transaction.

    A channel turn's reply becomes due in the same transaction, so no worker crash or
    broker outage after the commit can lose it: the reaper posts what the caller could
    not. Says whether a reply is due now (the caller sends its trigger).
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
        more_turns = _write_step(turn, fence, messages or [], usage, fields, look_ahead=True)
        if turn.source in DELIVERED_SOURCES:  # reply: due now, sent by the caller
            reply_due = bool(
                ChannelDelivery.objects.filter(turn_id=turn.pk).update(next_attempt_at=now)
            )
    _committed(turn, usage, fields)
    return Finished(reply_due=reply_due, more_turns=more_turns)
