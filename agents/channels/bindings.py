"""Creating and changing channel bindings, reading their secrets, naming their sessions,
and submitting a message that came through one.

Secrets go in encrypted (beamclaw.crypto) and come out only here, for the code that signs
or posts with them.
"""

from __future__ import annotations

import hashlib
import re

from django.db import transaction
from nacl.exceptions import CryptoError
from nacl.signing import VerifyKey

from agents.models import Agent, ChannelBinding, ChannelDelivery, ChannelKind, ChannelSessionScope
from agents.selectors import get_agent
from agents.services import Submission, submit_message
from beamclaw.crypto import decrypt, encrypt
from beamclaw.errors import InvalidInput, NotFound
from tenants.models import Tenant

SECRET_FIELDS = ("signing_secret", "bot_token")

# One part of a session name: agents.services.SESSION_KEY_RE allows `[A-Za-z0-9_.:-]`, and
# the colon separates parts, so it is replaced inside one.
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
SESSION_NAME_MAX = 200


def session_key(agent_slug: str, *parts: object) -> str:
    """`agent:<slug>:<part>:<part>...`, each part made safe; too long a name keeps its
    start and gets a digest of the whole, so distinct names stay distinct."""
    name = ":".join(_UNSAFE.sub("-", str(part)).strip("-") or "-" for part in parts)
    if len(name) > SESSION_NAME_MAX:
        digest = hashlib.sha256(name.encode()).hexdigest()[:16]
        name = f"{name[: SESSION_NAME_MAX - 17]}.{digest}"
    return f"agent:{agent_slug}:{name}"


def signing_secret(binding: ChannelBinding) -> str:
    return decrypt(binding.signing_secret_encrypted)


def bot_token(binding: ChannelBinding) -> str:
    return decrypt(binding.bot_token_encrypted)


def check_public_key(public_key: str) -> None:
    try:
        VerifyKey(bytes.fromhex(public_key))
    except (ValueError, TypeError, CryptoError):
        raise InvalidInput(
            "invalid_public_key",
            "The Discord public key must be the 64 hex digits shown on the application's "
            "General Information page.",
        )


def validate_binding(binding: ChannelBinding, *, has_signing_secret: bool) -> None:
    """What a binding needs before a webhook can trust a request for it."""
    if binding.kind not in ChannelKind.values:
        raise InvalidInput("invalid_kind", f"Unknown channel kind '{binding.kind}'.")
    if binding.session_scope not in ChannelSessionScope.values:
        raise InvalidInput(
            "invalid_session_scope",
            f"Unknown session scope '{binding.session_scope}'.",
            details={"allowed": ChannelSessionScope.values},
        )
    if binding.agent.tenant_id != binding.tenant_id or binding.agent.deleted_at is not None:
        raise NotFound("agent_not_found", f"There is no agent '{binding.agent.slug}'.")
    if binding.kind == ChannelKind.SLACK and not has_signing_secret:
        raise InvalidInput(
            "signing_secret_required", "A Slack binding needs the app's signing secret."
        )
    if binding.kind == ChannelKind.DISCORD:
        check_public_key(binding.public_key)


def save_binding(
    *, binding: ChannelBinding, signing_secret: str = "", bot_token: str = ""
) -> ChannelBinding:
    """Validate and store the binding; a secret given is encrypted, one left "" is kept
    (secrets are write-only: a form that never shows them must not erase them)."""
    if signing_secret.strip():
        binding.signing_secret_encrypted = encrypt(signing_secret.strip())
    if bot_token.strip():
        binding.bot_token_encrypted = encrypt(bot_token.strip())
    binding.external_id = binding.external_id.strip()
    binding.public_key = binding.public_key.strip().lower()
    validate_binding(binding, has_signing_secret=bool(binding.signing_secret_encrypted))
    binding.save()
    return binding


def create_binding(
    *,
    tenant: Tenant,
    kind: str,
    agent: Agent | str,
    name: str = "",
    external_id: str = "",
    session_scope: str = ChannelSessionScope.CHANNEL_OR_THREAD,
    signing_secret: str = "",
    bot_token: str = "",
    public_key: str = "",
) -> ChannelBinding:
    binding = ChannelBinding(
        tenant=tenant,
        kind=kind,
        agent=agent if isinstance(agent, Agent) else get_agent(tenant, agent),
        name=name,
        external_id=external_id,
        session_scope=session_scope,
        public_key=public_key,
    )
    return save_binding(binding=binding, signing_secret=signing_secret, bot_token=bot_token)


def submit_with_reply_target(
    binding: ChannelBinding, *, session_key: str, content: str, target: dict
) -> Submission:
    """Submit a message that came through the binding as a turn, recording where its
    answer goes (`target`, the ChannelDelivery's) before the turn is dispatched.

    A message that joins a queued turn (`collect`) leaves that turn's target as it is:
    one turn, one answer, where the first message asked.
    """
    with transaction.atomic():
        submission = submit_message(
            tenant=binding.tenant, session_key=session_key, content=content, source=binding.kind
        )
        ChannelDelivery.objects.get_or_create(
            turn=submission.turn, defaults={"binding": binding, "target": target}
        )
    return submission
