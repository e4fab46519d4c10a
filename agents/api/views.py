"""The agents API: agents, sessions, messages, turns and their live events.

Views parse input, call a service or selector, and render; the two that wait on a turn
(`POST .../messages?wait=` and the SSE streams) are async so a waiting client costs a
coroutine, not a thread.
"""

from __future__ import annotations

import contextlib

from asgiref.sync import sync_to_async
from django.db import connection
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from agents import selectors, services
from agents.models import ProviderName, Turn
from agents.runtime import events
from beamclaw.api.async_view import AsyncAPIView
from beamclaw.api.pagination import CursorPagination
from beamclaw.api.validation import validated
from beamclaw.errors import NotFound
from tenants.api.auth import request_tenant

from . import sse
from .open_streams import EventsUnavailable, open_streams
from .serializers import (
    TURN_EVENTS,
    AgentSerializer,
    AgentUpdateSerializer,
    MessageSerializer,
    ProviderCredentialSerializer,
    SessionListQuerySerializer,
    SessionSerializer,
    SubmissionSerializer,
    SubmitMessageSerializer,
    TurnSerializer,
)

SESSION_BUSY = OpenApiResponse(description="`session_busy`: a turn of the session is active.")

# --- Agents ---------------------------------------------------------------------------


class AgentListView(generics.ListCreateAPIView):
    """List your agents, or create one."""

    serializer_class = AgentSerializer

    def get_queryset(self):
        return selectors.agents_of(request_tenant(self.request))

    @extend_schema(
        responses={
            201: AgentSerializer,
            409: OpenApiResponse(description="`agent_exists`: you have an agent with that slug."),
        }
    )
    def post(self, request, *args, **kwargs):
        return super().post(request, *args, **kwargs)

    def create(self, request, *args, **kwargs):
        data = validated(AgentSerializer(data=request.data))
        agent = services.create_agent(tenant=request_tenant(request), **data)
        return Response(AgentSerializer(agent).data, status=status.HTTP_201_CREATED)


class AgentDetailView(generics.RetrieveUpdateDestroyAPIView):
    """Read, change or delete an agent (kept as a soft delete while sessions use it)."""

    serializer_class = AgentUpdateSerializer
    lookup_field = "slug"

    def get_object(self):
        return selectors.get_agent(request_tenant(self.request), self.kwargs["slug"])

    def update(self, request, *args, **kwargs):
        agent = self.get_object()
        partial = kwargs.get("partial", False)
        data = validated(AgentUpdateSerializer(agent, data=request.data, partial=partial))
        agent = services.update_agent(agent=agent, **data)
        return Response(AgentSerializer(agent).data)

    def perform_destroy(self, instance):
        services.delete_agent(agent=instance)


# --- Provider credentials -------------------------------------------------------------


class ProviderCredentialListView(generics.ListAPIView):
    """Your own provider keys and endpoints (keys are write-only, encrypted at rest)."""

    serializer_class = ProviderCredentialSerializer
    pagination_class = None

    def get_queryset(self):
        return selectors.provider_credentials_of(request_tenant(self.request))


class ProviderCredentialView(APIView):
    """Set (PUT) or remove (DELETE) your key and base URL for one provider."""

    @extend_schema(request=ProviderCredentialSerializer, responses=ProviderCredentialSerializer)
    def put(self, request, provider: str):
        if provider not in ProviderName.values:
            raise NotFound("unknown_provider", f"Unknown provider '{provider}'.")
        data = validated(ProviderCredentialSerializer(data=request.data))
        credential = services.set_provider_credential(
            tenant=request_tenant(request), provider=provider, **data
        )
        return Response(ProviderCredentialSerializer(credential).data)

    @extend_schema(responses={204: None})
    def delete(self, request, provider: str):
        services.delete_provider_credential(tenant=request_tenant(request), provider=provider)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- Sessions -------------------------------------------------------------------------


class SessionListView(generics.ListAPIView):
    """Your sessions, newest first; filter with `?agent=<slug>` and `?active=true|false`
    (a turn queued, running or waiting now, or none)."""

    serializer_class = SessionSerializer

    @extend_schema(parameters=[SessionListQuerySerializer])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        query = validated(
            SessionListQuerySerializer(data=self.request.query_params),
            dict.fromkeys(["agent", "active"], "invalid_session_filter"),
        )
        return selectors.sessions_of(
            request_tenant(self.request), agent=query.get("agent"), active=query["active"]
        )


class SessionDetailView(generics.RetrieveDestroyAPIView):
    """Read a session by key, or delete it with its history."""

    serializer_class = SessionSerializer

    @extend_schema(responses={204: None, 409: SESSION_BUSY})
    def delete(self, request, *args, **kwargs):
        return super().delete(request, *args, **kwargs)

    def get_object(self):
        return selectors.get_session(request_tenant(self.request), self.kwargs["key"])

    def perform_destroy(self, instance):
        services.delete_session(session=instance)


class SessionResetView(APIView):
    """Clear a session's history and memory; the key stays."""

    @extend_schema(request=None, responses={200: SessionSerializer, 409: SESSION_BUSY})
    def post(self, request, key: str):
        tenant = request_tenant(request)
        services.reset_session(session=selectors.get_session(tenant, key))
        # Read back through the selector: it adds `active`, which the schema promises.
        return Response(SessionSerializer(selectors.get_session(tenant, key)).data)


class HistoryPagination(CursorPagination):
    ordering = "seq"


def _turn_payload(turn: Turn, *, with_reply: bool) -> dict:
    replies = {}
    if with_reply and (reply := selectors.reply_of(turn)) is not None:
        replies[turn.pk] = reply.content
    return TurnSerializer(turn, context={"replies": replies}).data


class SessionMessagesView(AsyncAPIView):
    """The conversation (GET, oldest first) and sending a message to the agent (POST)."""

    pagination_class = HistoryPagination  # also tells the schema the history is paged

    @extend_schema(responses=MessageSerializer(many=True))
    async def get(self, request, key: str):
        return await sync_to_async(self._history)(request, key)

    def _history(self, request, key):
        session = selectors.get_session(request_tenant(request), key)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(selectors.history(session), request, view=self)
        return paginator.get_paginated_response(MessageSerializer(page, many=True).data)

    @extend_schema(
        request=SubmitMessageSerializer,
        responses={
            200: OpenApiResponse(SubmissionSerializer, description="finished within `wait`"),
            202: OpenApiResponse(SubmissionSerializer, description="accepted, still running"),
            403: OpenApiResponse(
                description="`session_limit_reached` (a new session past your limit) or "
                "`tenant_suspended`."
            ),
            409: OpenApiResponse(description="`session_busy` with mode `reject`"),
            429: OpenApiResponse(
                description="`too_many_streams`: with `wait`, over the tenant's open streams"
            ),
        },
    )
    async def post(self, request, key: str):
        data = validated(
            SubmitMessageSerializer(data=request.data),
            codes={"content": "invalid_content", "mode": "invalid_mode", "wait": "invalid_wait"},
        )
        tenant = request_tenant(request)
        # A waiting client holds a stream slot, taken before anything is stored: over the
        # tenant's cap the message is refused (429), not accepted and then not waited on.
        held = None
        if data.get("wait"):
            # Without Redis there are no live events: accept the message, answer 202.
            with contextlib.suppress(EventsUnavailable):
                held = await open_streams().admit(request.user)
        try:
            submission = await sync_to_async(_submit)(
                tenant, key, data["content"], data.get("mode"), then_release=held is not None
            )
            finished = False
            if held is not None and not submission.delayed:
                finished = await sse.wait_for_finish(
                    events.turn_done_stream(submission.turn), data["wait"], held=held
                )
        finally:
            if held is not None:
                await open_streams().release(held)
        if finished:
            turn, reply = await sync_to_async(selectors.turn_with_reply)(submission.turn)
            payload = TurnSerializer(
                turn, context={"replies": {turn.pk: reply} if reply is not None else {}}
            ).data
        else:
            payload = _turn_payload(submission.turn, with_reply=False)  # no query: as stored
        body = {
            "turn": payload,
            "message": MessageSerializer(submission.message).data,
            "new_turn": submission.new_turn,
            "delayed": submission.delayed,
        }
        return Response(body, status=status.HTTP_200_OK if finished else status.HTTP_202_ACCEPTED)


def release_connection() -> None:
    """Before a long wait on Redis, give the request's database connection back (to the
    pool, on PostgreSQL): a thousand clients waiting for answers must hold none."""
    if not connection.in_atomic_block:
        connection.close()


def _submit(tenant, key: str, content: str, mode: str | None, *, then_release: bool):
    submission = services.submit_message(tenant=tenant, session_key=key, content=content, mode=mode)
    if then_release:
        release_connection()
    return submission


# --- Turns ----------------------------------------------------------------------------


class TurnDetailView(APIView):
    """A turn: status, error, usage, timings and, once it succeeded, the reply."""

    @extend_schema(responses=TurnSerializer)
    def get(self, request, turn_id: int):
        turn = selectors.get_turn(request_tenant(request), turn_id)
        return Response(_turn_payload(turn, with_reply=True))


class TurnCancelView(APIView):
    """Cancel a turn: at once if queued, at its next step if running; 409 if it ended."""

    @extend_schema(
        request=None,
        responses={
            202: TurnSerializer,
            409: OpenApiResponse(description="`turn_not_cancellable`: the turn already ended."),
        },
    )
    def post(self, request, turn_id: int):
        turn = selectors.get_turn(request_tenant(request), turn_id)
        turn = services.cancel_turn(turn=turn)
        return Response(_turn_payload(turn, with_reply=False), status=status.HTTP_202_ACCEPTED)


# --- Live events ----------------------------------------------------------------------

EVENT_STREAM = OpenApiResponse(
    OpenApiTypes.STR,
    description="Server-Sent Events. Each event is `id: <event id>`, `event: <name>` and "
    "`data: <one JSON object>`; lines starting with `:` only keep the connection open. "
    f"Events: {', '.join(f'`{name}`' for name in TURN_EVENTS)}; `x-events` gives each "
    "one's `data` shape (the `*Event` schemas).",
)

SSE_DOC = extend_schema(
    parameters=[
        OpenApiParameter(
            "Last-Event-ID",
            str,
            OpenApiParameter.HEADER,
            description="resume after this event id (or `?last_event_id=`)",
        ),
        OpenApiParameter(
            "last_event_id", str, description="resume after this event id (or `Last-Event-ID`)"
        ),
    ],
    responses={
        (200, "text/event-stream"): EVENT_STREAM,
        400: OpenApiResponse(description="`invalid_last_event_id`: not an event id this API sent."),
        429: OpenApiResponse(
            description="`too_many_streams`: you have as many event streams open as you may, "
            "or `rate_limited`; retry after `Retry-After` seconds."
        ),
    },
)


def _get_and_release(select, *args):
    """Look the row up, then give the connection back: an event stream lasts long."""
    row = select(*args)
    release_connection()
    return row


def _last_event_id(request) -> str:
    return sse.parse_last_event_id(
        request.headers.get("Last-Event-ID") or request.query_params.get("last_event_id")
    )


def _sse_response(frames) -> StreamingHttpResponse:
    response = StreamingHttpResponse(frames, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: don't buffer the stream
    return response


class TurnEventsView(AsyncAPIView):
    """Live events of one turn as Server-Sent Events; the stream ends with `turn.finished`
    (or an `error` event when the server has to end it: key revoked, Redis away)."""

    renderer_classes = [JSONRenderer, sse.EventStreamRenderer]
    stream_events = TURN_EVENTS

    @SSE_DOC
    async def get(self, request, turn_id: int):
        tenant = request_tenant(request)
        turn = await sync_to_async(_get_and_release)(selectors.get_turn, tenant, turn_id)
        last_event_id = _last_event_id(request)

        async def finished_summary() -> dict | None:
            current = await selectors.reread_turn(turn)
            if not current.is_final:
                return None
            return {
                "turn_id": current.pk,
                "data": {"status": current.status, "error_code": current.error_code},
            }

        held = await open_streams().admit(request.user, started=False)
        frames = sse.stream(
            events.turn_stream(turn),
            last_event_id,
            held=held,
            end_on_finish=True,
            finished_without_events=finished_summary,
        )
        return _sse_response(frames)


class SessionEventsView(AsyncAPIView):
    """Live events of every turn of a session, as Server-Sent Events, until you disconnect
    (or an `error` event when the server has to end it: key revoked, Redis away)."""

    renderer_classes = [JSONRenderer, sse.EventStreamRenderer]
    stream_events = TURN_EVENTS

    @SSE_DOC
    async def get(self, request, key: str):
        tenant = request_tenant(request)
        session = await sync_to_async(_get_and_release)(selectors.get_session, tenant, key)
        last_event_id = _last_event_id(request)
        held = await open_streams().admit(request.user, started=False)
        frames = sse.stream(
            events.session_stream(session),
            last_event_id,
            held=held,
            end_on_finish=False,
        )
        return _sse_response(frames)
