"""Everything that changes agents, sessions and turns; views, commands and tasks call these."""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass

import httpx
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from redis.exceptions import RedisError

from beamclaw.crypto import encrypt
from beamclaw.errors import Conflict, Forbidden, InvalidInput, TooLarge, Unavailable
from beamclaw.outbound import AddressRefused
from beamclaw.redis import get_redis
from beamclaw.telemetry import emit
from tenants.models import Tenant

from .models import (
    ACTIVE_STATUSES,
    Agent,
    Message,
    MessageRole,
    ProviderCredential,
    QueueMode,
    Session,
    Turn,
    TurnStatus,
)
from .runtime import events
from .runtime.cancellation import cancel_key
from .runtime.children import wake_parent
from .runtime.dispatch import dispatch_turn
from .runtime.provider_choice import tenant_base_url_policy
from .selectors import get_agent

SESSION_KEY_RE = re.compile(
    r"^agent:([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?):([A-Za-z0-9_.:-]{1,200})$"
)
SESSION_KEY_HELP = (
    "Session keys look like 'agent:<agent-slug>:<name>'; the name is 1-200 letters, "
    "digits or '-_.:'."
)


@dataclass
class Submission:
    turn: Turn
    message: Message
    new_turn: bool  # False when the message joined a queued turn (`collect`)
    # True when the broker was unreachable: the turn is stored and runs once it is back.
    delayed: bool = False


def parse_session_key(key: str) -> tuple[str, str]:
    match = SESSION_KEY_RE.match(key)
    if not match:
        raise InvalidInput("invalid_session_key", SESSION_KEY_HELP, details={"key": key[:300]})
    return match.group(1), match.group(2)


def check_message_content(content: str, *, what: str = "message content") -> None:
    """Refuse a message that is blank (`empty_content`: "The <what> is empty.") or over
    MESSAGE_MAX_BYTES (`content_too_large`)."""
    if not content or not content.strip():
        raise InvalidInput("empty_content", f"The {what} is empty.")
    if len(content.encode()) > settings.MESSAGE_MAX_BYTES:
        raise TooLarge(
            "content_too_large",
            f"The message is over {settings.MESSAGE_MAX_BYTES} bytes.",
            details={"max_bytes": settings.MESSAGE_MAX_BYTES},
        )


def _session_for_update(
    tenant: Tenant, agent_slug: str, key: str, parent_turn: Turn | None = None
) -> tuple[Session, Agent]:
    """The session row, locked for this transaction, and the live agent it talks to; the
    session is created on the first message. An existing session and its agent are read
    in one statement (only the session row is locked)."""
    session = (
        Session.objects.select_for_update(of=("self",))
        .select_related("agent")
        .filter(tenant=tenant, key=key)
        .first()
    )
    if session is not None:
        agent = session.agent
        if agent.deleted_at is not None or agent.slug != agent_slug:
            agent = get_agent(tenant, agent_slug)  # deleted, maybe re-created under its slug
        return session, agent
    agent = get_agent(tenant, agent_slug)
    # Lock the tenant row so concurrent first messages can't overshoot max_sessions.
    limits = Tenant.objects.select_for_update().only("max_sessions").get(pk=tenant.pk)
    if Session.objects.filter(tenant=tenant).count() >= limits.max_sessions:
        emit(
            "limit.rejected",
            tenant_id=tenant.pk,
            tenant=tenant.slug,
            limit="sessions",
            turn_id=None,
            detail=f"{limits.max_sessions} sessions",
        )
        raise Forbidden(
            "session_limit_reached",
            f"The tenant has reached its limit of {limits.max_sessions} sessions; "
            "delete some or ask for a higher limit.",
            details={"max_sessions": limits.max_sessions},
        )
    try:
        with transaction.atomic():
            session = Session.objects.create(
                tenant=tenant,
                agent=agent,
                key=key,
                parent_id=parent_turn.session_id if parent_turn else None,
            )
    except IntegrityError:  # a concurrent first message created it
        session = Session.objects.select_for_update().get(tenant=tenant, key=key)
    return session, agent


def submit_message(
    *,
    tenant: Tenant,
    session_key: str,
    content: str,
    mode: str | None = None,
    source: str = "api",
    parent_turn: Turn | None = None,
    parent_tool_call_id: str = "",
) -> Submission:
    """Store the user message and its queued turn in one transaction; dispatch on commit."""
    agent_slug, _ = parse_session_key(session_key)
    check_message_content(content)

    with transaction.atomic():
        session, agent = _session_for_update(tenant, agent_slug, session_key, parent_turn)
        mode = mode or agent.queue_mode
        if mode not in QueueMode.values:
            raise InvalidInput(
                "invalid_mode", f"Unknown mode '{mode}'.", details={"allowed": QueueMode.values}
            )
        # Enqueue looks at no other turn of the session (they run in order): one statement
        # fewer on the common path.
        active = (
            []
            if mode == QueueMode.ENQUEUE
            else list(
                Turn.objects.filter(session=session, status__in=ACTIVE_STATUSES)
                .select_related("agent")
                .order_by("id")
            )
        )
        for other in active:
            other.session = session  # a submission's turn is rendered without more queries
        queued = [t for t in active if t.status == TurnStatus.QUEUED]
        if mode == QueueMode.REJECT and active:
            raise Conflict(
                "session_busy",
                "The session is busy with another turn; retry later or use mode 'enqueue'.",
                details={"active_turn_id": active[0].pk},
            )
        if mode == QueueMode.COLLECT and queued:
            turn = queued[-1]
            message = Message.objects.create(
                session=session, turn=turn, role=MessageRole.USER, content=content
            )
            return Submission(turn=turn, message=message, new_turn=False)

        turn = Turn.objects.create(
            tenant=tenant,
            session=session,
            agent=agent,
            mode=mode,
            source=source,
            parent_turn=parent_turn,
            parent_tool_call_id=parent_tool_call_id,
        )
        message = Message.objects.create(
            session=session, turn=turn, role=MessageRole.USER, content=content
        )
        if mode == QueueMode.INTERRUPT:
            _interrupt(active, into=turn)
        submission = Submission(turn=turn, message=message, new_turn=True)
        transaction.on_commit(lambda: _announce(submission, tenant.slug))
    return submission


def _interrupt(active: list[Turn], *, into: Turn) -> None:
    """Stop the running turn at its next step; queued ones fold into the new turn.

    Their messages are not lost: the agent reads them in the new turn, before the
    message that interrupted.
    """
    for turn in active:
        if turn.status == TurnStatus.QUEUED:
            Message.objects.filter(turn=turn, seq__isnull=True).update(turn=into)
            Turn.objects.filter(pk=turn.pk, status=TurnStatus.QUEUED).update(
                status=TurnStatus.CANCELLED,
                error_code="interrupted",
                error_message=f"Superseded by turn {into.pk}.",
                finished_at=timezone.now(),
            )
            transaction.on_commit(lambda turn=turn: _announce_cancelled(turn, "interrupted"))
        else:
            _request_cancel(turn, reason="interrupted")


def _announce(submission: Submission, tenant_slug: str) -> None:
    turn = submission.turn
    # Redis may be down: the turn row is what counts, the event is a courtesy.
    with contextlib.suppress(Exception):
        events.publish(
            turn, [("turn.queued", {"session_key": turn.session.key, "mode": turn.mode})]
        )
    submission.delayed = not dispatch_turn(turn, tenant_slug)


def _announce_cancelled(turn: Turn, code: str) -> None:
    """A turn cancelled before it started never runs: end its event stream here."""
    with contextlib.suppress(Exception):
        events.publish(
            turn, [(events.TERMINAL_EVENT, {"status": TurnStatus.CANCELLED, "error_code": code})]
        )


def _request_cancel(turn: Turn, *, reason: str = "cancelled") -> None:
    """Ask the running turn to stop at its next step boundary (it reads the Redis flag)."""
    Turn.objects.filter(pk=turn.pk).update(cancel_requested=True)
    try:
        get_redis().set(cancel_key(turn), reason, ex=24 * 3600)
    except RedisError:
        raise Unavailable(
            "service_unavailable",
            "Cannot reach Redis to signal the running turn; try again shortly.",
        )


def cancel_turn(*, turn: Turn) -> Turn:
    """Cancel a queued turn now, or a running one at its next step boundary."""
    if turn.is_final:
        raise Conflict(
            "turn_not_cancellable",
            f"The turn already ended ({turn.status}).",
            details={"status": turn.status},
        )
    now = timezone.now()
    cancelled_queued = Turn.objects.filter(
        pk=turn.pk, status__in=[TurnStatus.QUEUED, TurnStatus.WAITING]
    ).update(
        status=TurnStatus.CANCELLED,
        error_code="cancelled",
        error_message="Cancelled before it ran to the end.",
        finished_at=now,
    )
    if cancelled_queued:
        _announce_cancelled(turn, "cancelled")
        for child in turn.children.filter(status__in=ACTIVE_STATUSES):
            cancel_turn(turn=child)
        wake_parent(turn)
    else:
        _request_cancel(turn)
    turn.refresh_from_db()
    return turn


# --- Agents ---------------------------------------------------------------------------


def create_agent(*, tenant: Tenant, **fields) -> Agent:
    agent = Agent(tenant=tenant, **fields)
    agent.full_clean(exclude=["tenant"], validate_constraints=False)
    if Agent.objects.filter(tenant=tenant, slug=agent.slug, deleted_at__isnull=True).exists():
        raise Conflict("agent_exists", f"An agent '{agent.slug}' already exists.")
    try:
        with transaction.atomic():
            agent.save()
    except IntegrityError:
        raise Conflict("agent_exists", f"An agent '{agent.slug}' already exists.")
    return agent


def update_agent(*, agent: Agent, **fields) -> Agent:
    for name, value in fields.items():
        setattr(agent, name, value)
    agent.full_clean(exclude=["tenant", "slug"], validate_constraints=False)
    agent.save()
    return agent


def delete_agent(*, agent: Agent) -> None:
    """Delete for good when unused; keep the row (soft delete) while sessions refer to it."""
    if agent.sessions.exists():
        agent.deleted_at = timezone.now()
        agent.save(update_fields=["deleted_at", "updated_at"])
    else:
        agent.delete()


def set_provider_credential(
    *, tenant: Tenant, provider: str, api_key: str = "", base_url: str = ""
) -> ProviderCredential:
    """Store the tenant's key and base URL for a provider (replacing both).

    A base URL of the tenant's own needs the tenant's own key (the platform's is only
    sent to the platform's endpoint) and must pass the address check.
    """
    if base_url:
        if not api_key:
            raise InvalidInput(
                "api_key_required",
                "A base_url of your own needs an api_key of your own.",
                details={"field": "api_key"},
            )
        try:
            tenant_base_url_policy().targets(httpx.URL(base_url))
        except (AddressRefused, httpx.InvalidURL) as exc:
            raise InvalidInput(
                "base_url_refused", f"base_url refused: {exc}.", details={"field": "base_url"}
            )
    credential, _ = ProviderCredential.objects.update_or_create(
        tenant=tenant,
        provider=provider,
        defaults={"api_key_encrypted": encrypt(api_key), "base_url": base_url},
    )
    return credential


def delete_provider_credential(*, tenant: Tenant, provider: str) -> None:
    """Forget the tenant's own key and base URL for the provider."""
    ProviderCredential.objects.filter(tenant=tenant, provider=provider).delete()


# --- Sessions -------------------------------------------------------------------------


def reset_session(*, session: Session) -> Session:
    """Clear the history and memory, keep the key. Refused while a turn is active."""
    with transaction.atomic():
        session = Session.objects.select_for_update().get(pk=session.pk)
        if session.turns.filter(status__in=ACTIVE_STATUSES).exists():
            raise Conflict("session_busy", "Cancel or wait for the active turn before a reset.")
        session.messages.all().delete()
        session.turns.all().delete()
        session.memory = {}
        session.last_seq = 0
        session.save(update_fields=["memory", "last_seq"])
    return session


def delete_session(*, session: Session) -> None:
    if session.turns.filter(status__in=[TurnStatus.RUNNING, TurnStatus.WAITING]).exists():
        raise Conflict("session_busy", "Cancel or wait for the running turn before deleting.")
    session.delete()
