"""Read-side queries for the API, the admin and the CLI; always scoped to one tenant."""

from __future__ import annotations

from django.db.models import Exists, OuterRef, QuerySet, Subquery

from beamclaw.errors import first_or_not_found
from tenants.models import Tenant

from .models import (
    ACTIVE_STATUSES,
    Agent,
    Message,
    MessageRole,
    ProviderCredential,
    Session,
    Turn,
)


def agents_of(tenant: Tenant) -> QuerySet[Agent]:
    return Agent.objects.filter(tenant=tenant, deleted_at__isnull=True)


def get_agent(tenant: Tenant, slug: str) -> Agent:
    """The tenant's live (not deleted) agent with this slug, or NotFound `agent_not_found`."""
    return first_or_not_found(
        agents_of(tenant), "agent_not_found", f"There is no agent '{slug}'.", slug=slug
    )


def sessions_of(
    tenant: Tenant, *, agent: str | None = None, active: bool | None = None
) -> QuerySet[Session]:
    """The tenant's sessions, each with `active`: whether a turn of it is queued, running
    or waiting on sub-agents now; only those of agent slug `agent`, and only (in)active
    ones, when given."""
    busy = Turn.objects.filter(session=OuterRef("pk"), status__in=ACTIVE_STATUSES)
    sessions = (
        Session.objects.filter(tenant=tenant)
        .select_related("agent", "parent")
        .annotate(active=Exists(busy))
    )
    if agent:
        sessions = sessions.filter(agent__slug=agent)
    if active is not None:
        sessions = sessions.filter(active=active)
    return sessions


def get_session(tenant: Tenant, key: str) -> Session:
    return first_or_not_found(
        sessions_of(tenant), "session_not_found", f"There is no session '{key[:300]}'.", key=key
    )


def provider_credentials_of(tenant: Tenant) -> QuerySet[ProviderCredential]:
    return ProviderCredential.objects.filter(tenant=tenant)


def history(session: Session) -> QuerySet[Message]:
    """The conversation in order; messages of turns that have not started are not in it yet."""
    return Message.objects.filter(session=session, seq__isnull=False).select_related("turn")


def turns_of(tenant: Tenant) -> QuerySet[Turn]:
    return Turn.objects.filter(tenant=tenant).select_related("session", "agent")


def get_turn(tenant: Tenant, turn_id: int) -> Turn:
    return first_or_not_found(
        turns_of(tenant), "turn_not_found", f"There is no turn {turn_id}.", pk=turn_id
    )


async def reread_turn(turn: Turn) -> Turn:
    """The turn's row as it is now (its status may have changed since it was read)."""
    return await Turn.objects.aget(pk=turn.pk)


def _replies() -> QuerySet[Message]:
    return Message.objects.filter(role=MessageRole.ASSISTANT, tool_calls=[]).order_by("-seq")


def reply_of(turn: Turn) -> Message | None:
    """The turn's final answer, when it has one."""
    return _replies().filter(turn=turn).first()


def turn_with_reply(turn: Turn) -> tuple[Turn, str | None]:
    """`turn` read again, as it is now, and the text of its final answer (as reply_of), in
    one query on the turn row alone: its session and agent are the ones `turn` holds."""
    reply = _replies().filter(turn=OuterRef("pk")).values("content")[:1]
    fresh = Turn.objects.annotate(reply_text=Subquery(reply)).get(pk=turn.pk)
    fresh.session, fresh.agent = turn.session, turn.agent
    return fresh, fresh.reply_text
