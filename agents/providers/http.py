"""HTTP plumbing the HTTP adapters share: one pooled client per process, SSE reading,
and the single mapping from HTTP failures to ProviderError codes."""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from itertools import chain

import httpx

from agents.providers.base import (
    PROVIDER_AUTH_FAILED,
    PROVIDER_BAD_REQUEST,
    PROVIDER_BAD_RESPONSE,
    PROVIDER_RATE_LIMITED,
    PROVIDER_TIMEOUT,
    PROVIDER_UNAVAILABLE,
    DeltaCallback,
    Provider,
    ProviderError,
    ProviderResponse,
)

SseEvents = Iterator[tuple[str, dict]]
ParseJson = Callable[[dict], ProviderResponse]
ParseStream = Callable[[SseEvents, DeltaCallback], ProviderResponse]

# What malformed JSON or an unexpected shape raises while we pick fields out of it.
_PARSE_ERRORS = (ValueError, KeyError, TypeError, IndexError, AttributeError)

_client: httpx.Client | None = None
_client_lock = threading.Lock()


def get_http_client() -> httpx.Client:
    """The process-wide client (httpx.Client is thread-safe; sharing it pools connections)."""
    global _client
    if _client is None:
        with _client_lock:
            if _client is None:
                # A worker runs a turn per thread; keep a warm connection for each.
                limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
                _client = httpx.Client(limits=limits)
    return _client


def _forget_client_in_child() -> None:
    # A forked child (Celery prefork) must not share the parent's sockets; it builds its own.
    global _client, _client_lock
    _client = None
    _client_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_client_in_child)


class _CallbackFailed(Exception):
    """Carries an exception raised by on_delta past the response-parsing error mapping."""

    def __init__(self, original: Exception):
        super().__init__(str(original))
        self.original = original


def post(
    provider: Provider,
    url: str,
    *,
    headers: dict[str, str],
    body: dict,
    on_delta: DeltaCallback | None,
    parse: ParseJson,
    parse_stream: ParseStream | None = None,
) -> ProviderResponse:
    """POST `body` as JSON and parse the answer; every failure becomes a ProviderError.

    With `parse_stream` the answer is read as server-sent events and text fragments go to
    `on_delta`. A failure after a fragment went out is not retryable: a retry would send
    the caller the same text twice.
    """
    client = provider.http or get_http_client()
    emitted = False

    def emit(text: str) -> None:
        nonlocal emitted
        if not text:
            return
        emitted = True
        if on_delta is not None:
            try:
                on_delta(text)
            except Exception as exc:
                raise _CallbackFailed(exc)

    try:
        with client.stream(
            "POST", url, headers=headers, json=body, timeout=provider.timeout
        ) as response:
            if not response.is_success:
                response.read()
                raise error_from_response(response, provider.name)
            content_type = response.headers.get("content-type", "")
            # Some servers ignore `stream: true` and answer with one JSON document.
            if parse_stream is not None and not content_type.startswith("application/json"):
                if content_type and "event-stream" not in content_type:
                    raise ValueError(f"expected an event stream, got {content_type}")
                result = parse_stream(iter_sse(response), emit)
            else:
                response.read()
                result = parse(_json_object(response.content))
    except _CallbackFailed as exc:
        raise exc.original from None
    except ProviderError as exc:
        exc.retryable = exc.retryable and not emitted
        raise
    except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError, *_PARSE_ERRORS) as exc:
        error = error_from_exception(exc, provider.name)
        error.retryable = error.retryable and not emitted
        raise error from exc
    result.model = result.model or body.get("model", "")
    return result


def iter_sse(response: httpx.Response) -> SseEvents:
    """Yield (event name, JSON data) per server-sent event; stop at `[DONE]`.

    An event carrying an `error` object (both OpenAI and Anthropic send one mid-stream)
    raises the matching ProviderError.
    """
    event, data = "", []
    for line in chain(response.iter_lines(), [""]):  # "" flushes an unterminated last event
        if line.startswith(":"):  # comment / keepalive
            continue
        if line:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)
            continue
        if data:
            text = "\n".join(data)
            if text == "[DONE]":
                return
            payload = _json_object(text)
            if isinstance(payload.get("error"), dict):
                raise error_from_stream(payload["error"])
            yield event, payload
        event, data = "", []


def _json_object(raw: bytes | str) -> dict:
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    return data


def error_from_exception(exc: Exception, provider: str = "provider") -> ProviderError:
    """Map a transport or parsing exception to a ProviderError."""
    detail = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, httpx.TimeoutException):
        return ProviderError(PROVIDER_TIMEOUT, f"{provider} timed out ({detail})", retryable=True)
    if isinstance(exc, httpx.NetworkError | httpx.RemoteProtocolError | httpx.ProxyError):
        return ProviderError(
            PROVIDER_UNAVAILABLE, f"{provider} unreachable ({detail})", retryable=True
        )
    if isinstance(exc, (httpx.DecodingError, *_PARSE_ERRORS)):
        return ProviderError(PROVIDER_BAD_RESPONSE, f"{provider} sent a bad response ({detail})")
    # Misconfiguration (bad base URL, unsupported scheme): retrying cannot help.
    return ProviderError(PROVIDER_UNAVAILABLE, f"{provider} request failed ({detail})")


def error_from_response(response: httpx.Response, provider: str = "provider") -> ProviderError:
    """Map a non-2xx response to a ProviderError (status, Retry-After, error message)."""
    status = response.status_code
    message = f"{provider} answered HTTP {status}: {_error_message(response)}"
    retry_after = parse_retry_after(response.headers)
    if status in (401, 403):
        return ProviderError(PROVIDER_AUTH_FAILED, message, status=status)
    if status == 429:
        return ProviderError(
            PROVIDER_RATE_LIMITED, message, retryable=True, retry_after=retry_after, status=status
        )
    if status == 408:
        return ProviderError(PROVIDER_TIMEOUT, message, retryable=True, status=status)
    if status >= 500:  # includes Anthropic's 529 "overloaded"
        return ProviderError(
            PROVIDER_UNAVAILABLE, message, retryable=True, retry_after=retry_after, status=status
        )
    if status >= 400:
        return ProviderError(PROVIDER_BAD_REQUEST, message, status=status)
    return ProviderError(PROVIDER_BAD_RESPONSE, message, status=status)


def error_from_stream(error: dict) -> ProviderError:
    """Map an error object sent inside a stream (HTTP status was already 200)."""
    kind = str(error.get("type") or error.get("code") or "")
    message = f"stream error {kind}: {error.get('message', '')}"
    if "rate_limit" in kind:
        return ProviderError(PROVIDER_RATE_LIMITED, message, retryable=True)
    if "authentication" in kind or "permission" in kind:
        return ProviderError(PROVIDER_AUTH_FAILED, message)
    if "invalid_request" in kind:
        return ProviderError(PROVIDER_BAD_REQUEST, message)
    # overloaded_error, api_error, server_error and anything unknown: the provider's fault.
    return ProviderError(PROVIDER_UNAVAILABLE, message, retryable=True)


def parse_retry_after(headers: httpx.Headers) -> float | None:
    """Seconds to wait from `retry-after-ms` or `Retry-After` (seconds or an HTTP date)."""
    millis = _finite(headers.get("retry-after-ms"))
    if millis is not None:
        return max(millis / 1000, 0.0)
    value = headers.get("retry-after")
    if not value:
        return None
    seconds = _finite(value)
    if seconds is not None:
        return max(seconds, 0.0)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def _finite(value: str | None) -> float | None:
    try:
        number = float(value) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) else None


def _error_message(response: httpx.Response) -> str:
    # Both OpenAI and Anthropic put the human message at error.message.
    try:
        error = json.loads(response.content)["error"]
        return str(error["message"] if isinstance(error, dict) else error)
    except (ValueError, KeyError, TypeError):
        return response.text[:200] or "(empty body)"
