"""The Slack and Discord webhooks: check the signature over the raw body, then act.

Plain Django views, not DRF: the signature covers the exact bytes received, so nothing
may parse the body first. drf-spectacular documents DRF views only, so these stay out of
the OpenAPI schema. Both webhooks run one check before their own code (`_webhook_view`):
the method, the body's size, the signature, the tenant, then the JSON. An unknown binding
id answers exactly like a bad signature (401), so the answers never tell which bindings
exist. A suspended tenant's bindings answer 403 `tenant_suspended` once the signature
verifies, before any turn is created.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from redis.exceptions import RedisError

from agents.channels import RequestRefused, bindings, check_timestamp, discord, slack
from agents.models import ChannelBinding, ChannelKind
from beamclaw.errors import error_body, request_too_large

log = logging.getLogger(__name__)


def _error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse(error_body(code, message), status=status)


def _suspended() -> JsonResponse:
    """A suspended tenant's binding takes nothing, as its API keys take nothing (403); only
    a signed request learns it, so the answer tells a stranger nothing."""
    return _error(403, "tenant_suspended", "This tenant is suspended.")


def _binding(binding_id: int, kind: str) -> ChannelBinding | None:
    return (
        ChannelBinding.objects.filter(pk=binding_id, kind=kind)
        .select_related("tenant", "agent")
        .first()
    )


def _json_object(body: bytes) -> dict | None:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # too deep: not a real event
        return None
    return payload if isinstance(payload, dict) else None


def _raw_body(request: HttpRequest) -> bytes | None:
    """The exact bytes the signature covers; None for a body over Django's limit, which is
    refused unread (a signature cannot be checked without reading it)."""
    try:
        return request.body
    except RequestDataTooBig:
        return None


def _too_large() -> JsonResponse:
    error = request_too_large()  # the API's own 413, in the same shape
    return _error(error.status, error.code, error.message)


def _signed_headers(request: HttpRequest, timestamp: str, signature: str) -> tuple[str, str]:
    values = request.headers.get(timestamp), request.headers.get(signature)
    if not all(values):
        raise RequestRefused(
            "missing_signature", f"The request needs the {timestamp} and {signature} headers."
        )
    check_timestamp(values[0])
    return values


# Checks a request's signature for its binding (None: no such binding); RequestRefused if
# it does not verify.
Verify = Callable[[ChannelBinding | None, str, str, bytes], None]
SignedHandler = Callable[[HttpRequest, ChannelBinding, dict], JsonResponse]
View = Callable[[HttpRequest, int], JsonResponse]


@dataclass(frozen=True)
class _Webhook:
    """What differs between the channels' webhooks: the binding kind, the signature
    headers and the signature check."""

    kind: str
    post_only: str  # the 405 answer's message
    timestamp_header: str
    signature_header: str
    verify: Verify


def _verify_slack(
    binding: ChannelBinding | None, timestamp: str, signature: str, body: bytes
) -> None:
    secret = bindings.signing_secret(binding) if binding else None
    slack.verify(secret=secret, timestamp=timestamp, signature=signature, body=body)


def _verify_discord(
    binding: ChannelBinding | None, timestamp: str, signature: str, body: bytes
) -> None:
    public_key = binding.public_key if binding else None
    discord.verify(public_key=public_key, timestamp=timestamp, signature=signature, body=body)


SLACK = _Webhook(
    kind=ChannelKind.SLACK,
    post_only="Slack sends events with POST.",
    timestamp_header="X-Slack-Request-Timestamp",
    signature_header="X-Slack-Signature",
    verify=_verify_slack,
)
DISCORD = _Webhook(
    kind=ChannelKind.DISCORD,
    post_only="Discord sends interactions with POST.",
    timestamp_header="X-Signature-Timestamp",
    signature_header="X-Signature-Ed25519",
    verify=_verify_discord,
)


def _signed_payload(
    request: HttpRequest, binding_id: int, webhook: _Webhook
) -> tuple[ChannelBinding, dict] | JsonResponse:
    """The binding and the JSON object of a request whose signature verifies, or the
    answer that refuses it. The body is parsed only once its signature has verified."""
    if request.method != "POST":
        return _error(405, "method_not_allowed", webhook.post_only)
    if (body := _raw_body(request)) is None:
        return _too_large()
    try:
        timestamp, signature = _signed_headers(
            request, webhook.timestamp_header, webhook.signature_header
        )
        binding = _binding(binding_id, webhook.kind)
        webhook.verify(binding, timestamp, signature, body)
    except RequestRefused as refused:
        return _error(401, refused.code, refused.message)
    if not binding.tenant.is_active:
        return _suspended()
    payload = _json_object(body)
    if payload is None:
        return _error(400, "malformed_request", "The body is not a JSON object.")
    return binding, payload


def _webhook_view(webhook: _Webhook) -> Callable[[SignedHandler], View]:
    """Make `handle(request, binding, payload)` the webhook's view: it runs only for a
    request that passed `_signed_payload`."""

    def wrap(handle: SignedHandler) -> View:
        @csrf_exempt
        @functools.wraps(handle)
        def view(request: HttpRequest, binding_id: int) -> JsonResponse:
            checked = _signed_payload(request, binding_id, webhook)
            if isinstance(checked, JsonResponse):
                return checked
            return handle(request, *checked)

        return view

    return wrap


@_webhook_view(SLACK)
def slack_events(request: HttpRequest, binding: ChannelBinding, payload: dict) -> JsonResponse:
    """Slack Events API request URL: `url_verification`, app mentions, direct messages."""
    if payload.get("type") == "url_verification":
        return JsonResponse({"challenge": str(payload.get("challenge") or "")})
    if payload.get("type") != "event_callback":
        return JsonResponse({"ok": True})
    try:
        outcome = slack.handle_event(binding=binding, payload=payload)
    except RedisError:
        # No way to tell a retry from a first delivery: let Slack send it again later.
        return _error(503, "service_unavailable", "Try again shortly.")
    log.info(
        "slack event %s for binding %s: %s (retry %s)",
        payload.get("event_id"),
        binding.pk,
        outcome,
        request.headers.get("X-Slack-Retry-Num", "0"),
    )
    return JsonResponse({"ok": True})


@_webhook_view(DISCORD)
def discord_interactions(
    request: HttpRequest, binding: ChannelBinding, payload: dict
) -> JsonResponse:
    """Discord Interactions Endpoint URL: PING, and slash commands (answered deferred)."""
    kind = payload.get("type")
    if kind == discord.PING:
        return JsonResponse({"type": discord.PONG})
    if kind == discord.APPLICATION_COMMAND:
        try:
            return JsonResponse(discord.handle_command(binding=binding, payload=payload))
        except RedisError:  # no way to tell a replay from a first arrival
            return _error(503, "service_unavailable", "Try again shortly.")
    return _error(400, "unsupported_interaction", f"Interactions of type {kind!r} are not handled.")
