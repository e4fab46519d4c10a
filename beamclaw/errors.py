"""Domain errors: what was refused and why, with a stable code, free of HTTP
libraries and DRF.

Services, the runtime, cron and channels raise these; callers that are not the API (the
admin, management commands, channel webhooks, sub-agents) catch them. The API's exception
handler (beamclaw.api.errors) turns one into the one error shape
`{"error": {"code", "message", "details"}}` with `status` as the HTTP status.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from django.conf import settings

if TYPE_CHECKING:
    from django.db.models import Model, QuerySet

    Row = TypeVar("Row", bound=Model)
else:
    Row = TypeVar("Row")


class DomainError(Exception):
    """`raise Conflict("session_busy", "...")`; a subclass's `status` is its default.

    `details` is sent to the client as it is; `retry_after` (seconds) becomes the
    Retry-After header of a 429 or 503.
    """

    status: int = 400

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int | None = None,
        details: dict | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        if status is not None:
            self.status = status
        self.details = details or {}
        self.retry_after = retry_after

    def __str__(self) -> str:
        return self.message


class InvalidInput(DomainError):
    """The request itself is wrong: a bad value, an impossible schedule."""

    status = 400


class Forbidden(DomainError):
    """Understood and refused: a limit reached, a suspended tenant."""

    status = 403


class NotFound(DomainError):
    """No such object, or one the caller's tenant may not see (the answer is the same)."""

    status = 404


class Conflict(DomainError):
    """Refused for the state the object is in now: a busy session, an ended turn."""

    status = 409


class TooLarge(DomainError):
    status = 413


class RateLimited(DomainError):
    status = 429


class Unavailable(DomainError):
    """A dependency is away for now: retry later."""

    status = 503


def error_body(code: str, message: str, details: dict | None = None) -> dict:
    """The one error shape every JSON answer of an error has."""
    return {"error": {"code": code, "message": message, "details": details or {}}}


def request_too_large() -> TooLarge:
    return TooLarge(
        "request_too_large",
        f"The request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes.",
    )


def first_or_not_found(queryset: QuerySet[Row], code: str, message: str, **lookup: object) -> Row:
    """The one row of `queryset` matching `lookup`, or NotFound(code, message).

    Scope `queryset` to the caller's tenant: another tenant's row reads exactly like one
    that does not exist.
    """
    row = queryset.filter(**lookup).first()
    if row is None:
        raise NotFound(code, message)
    return row
