"""The OpenAPI schema's shared parts: the error shape, and the error statuses each
operation can answer, added to every operation so generated clients know all of them.

Which statuses an operation can answer follows from what it takes and how it is guarded:
a body or a query can be invalid (400), a path names an object that may not exist (404),
an authenticated operation can be refused (401, 403), a throttled one slowed down (429).
An operation documents a status of its own (a 409) with `extend_schema`; this fills in
the error body and the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ResolvedComponent
from rest_framework import serializers
from rest_framework.permissions import AllowAny, IsAdminUser


class ErrorSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="stable, for programs: `session_busy`, ...")
    message = serializers.CharField(help_text="for people")
    details = serializers.DictField(
        required=False, help_text="more about the error, e.g. each invalid field's messages"
    )

    class Meta:
        ref_name = "Error"


class ErrorResponseSerializer(serializers.Serializer):
    """The body of every error answer."""

    error = ErrorSerializer()

    class Meta:
        ref_name = "ErrorResponse"


RETRY_AFTER = {
    "Retry-After": {"schema": {"type": "integer"}, "description": "seconds to wait before retrying"}
}
RETRY_AFTER_STATUSES = {"429", "503"}


@dataclass(frozen=True)
class ErrorStatus:
    """One error status as a reusable response (`#/components/responses/<name>`)."""

    status: str
    name: str
    description: str


BAD_REQUEST = ErrorStatus(
    "400",
    "BadRequest",
    "The request is invalid: `error.code` says what (`validation_error`, `malformed_request` "
    "for a body that is not JSON, or a code naming the bad field); `error.details` gives "
    "each field's messages.",
)
UNAUTHORIZED = ErrorStatus(
    "401",
    "Unauthorized",
    "No valid credentials; `error.code` says why: `authentication_required`, "
    "`invalid_authorization_header`, `invalid_api_key` or `api_key_revoked` (on the staff "
    "API: `not_authenticated` or `authentication_failed`).",
)
TENANT_FORBIDDEN = ErrorStatus(
    "403", "Forbidden", "Refused: `tenant_suspended` (your tenant is suspended)."
)
STAFF_FORBIDDEN = ErrorStatus(
    "403",
    "StaffOnly",
    "Refused: the credentials are not a staff user's (`permission_denied` or `staff_only`).",
)
NOT_FOUND = ErrorStatus(
    "404",
    "NotFound",
    "`not_found` or a `*_not_found` code: no such object in your tenant (another tenant's "
    "objects are not found either), or a stale `cursor`.",
)
TOO_LARGE = ErrorStatus(
    "413",
    "PayloadTooLarge",
    "The body, or a message in it, is larger than the server accepts (`error.details` "
    "gives the limit where there is one, as for `content_too_large`).",
)
UNSUPPORTED_MEDIA_TYPE = ErrorStatus(
    "415",
    "UnsupportedMediaType",
    "`unsupported_media_type`: send `Content-Type: application/json`.",
)
TOO_MANY_REQUESTS = ErrorStatus(
    "429",
    "TooManyRequests",
    "`rate_limited`: too many requests with this API key; retry after `Retry-After` seconds.",
)
SERVICE_UNAVAILABLE = ErrorStatus(
    "503",
    "ServiceUnavailable",
    "`service_busy` or `service_unavailable`: the service is overloaded or cannot reach a "
    "dependency; retry after `Retry-After` seconds.",
)


class AutoSchemaWithErrors(AutoSchema):
    """drf-spectacular's AutoSchema, plus every error status the operation can answer,
    each with the `ErrorResponse` body, and the named events of an event stream."""

    def get_operation(self, *args: Any, **kwargs: Any) -> dict | None:
        operation = super().get_operation(*args, **kwargs)
        if operation is None:
            return None
        responses = operation["responses"]
        for error in self._error_statuses(operation):
            responses.setdefault(error.status, self._error_response(error))
        # An operation's own error statuses (a 409, ...) carry the same body.
        for status, response in responses.items():
            if not status.startswith(("4", "5")) or "$ref" in response:
                continue
            if not response.get("content"):
                response["content"] = {"application/json": {"schema": self._error_body()}}
            if status in RETRY_AFTER_STATUSES:
                response.setdefault("headers", RETRY_AFTER)
        self._describe_event_streams(responses)
        operation["responses"] = dict(sorted(responses.items()))
        return operation

    def _error_body(self) -> dict:
        return self.resolve_serializer(ErrorResponseSerializer, "response").ref

    def _error_response(self, error: ErrorStatus) -> dict:
        response = {
            "description": error.description,
            "content": {"application/json": {"schema": self._error_body()}},
        }
        if error.status in RETRY_AFTER_STATUSES:
            response["headers"] = RETRY_AFTER
        component = ResolvedComponent(
            name=error.name, type=ResolvedComponent.RESPONSE, object=error.name, schema=response
        )
        self.registry.register_on_missing(component)
        return component.ref

    def _error_statuses(self, operation: dict) -> list[ErrorStatus]:
        parameters = operation.get("parameters", [])
        query = {p["name"] for p in parameters if p["in"] == "query"}
        has_path_id = any(p["in"] == "path" for p in parameters)
        has_body = "requestBody" in operation
        statuses = []
        if has_body or query:
            statuses.append(BAD_REQUEST)
        if self._needs_credentials():
            statuses.append(UNAUTHORIZED)
            statuses.append(STAFF_FORBIDDEN if self._staff_only() else TENANT_FORBIDDEN)
        if has_path_id or "cursor" in query:  # a stale or forged cursor is a 404
            statuses.append(NOT_FOUND)
        if has_body:
            statuses += [TOO_LARGE, UNSUPPORTED_MEDIA_TYPE]
        if self.view.get_throttles():
            statuses.append(TOO_MANY_REQUESTS)
        statuses.append(SERVICE_UNAVAILABLE)  # no database connection free: any operation
        return statuses

    def _needs_credentials(self) -> bool:
        permissions = self.view.get_permissions()
        return bool(permissions) and not all(isinstance(p, AllowAny) for p in permissions)

    def _staff_only(self) -> bool:
        return any(isinstance(p, IsAdminUser) for p in self.view.get_permissions())

    def _describe_event_streams(self, responses: dict) -> None:
        """A view's `stream_events` ({event name: serializer of its `data`}) documents its
        text/event-stream answer: `x-events` names each event's data shape."""
        events = getattr(self.view, "stream_events", None)
        if not events:
            return
        shapes = {
            name: self.resolve_serializer(serializer, "response").ref
            for name, serializer in events.items()
        }
        for response in responses.values():
            stream = response.get("content", {}).get("text/event-stream")
            if stream is not None:
                stream["x-events"] = shapes
