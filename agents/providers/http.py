"""HTTP plumbing the HTTP adapters share: one pooled client per process, SSE reading,
and the single mapping from HTTP failures to ProviderError codes."""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from itertools import chain

import httpx

from agents.providers.base import (
    PROVIDER_AUTH_FAILED,
    PROVIDER_BAD_REQUEST,
    PROVIDER_BAD_RESPONSE,
    PROVIDER_DEADLINE_EXCEEDED,
    PROVIDER_RATE_LIMITED,
    PROVIDER_RESPONSE_TOO_LARGE,
    PROVIDER_TIMEOUT,
    PROVIDER_UNAVAILABLE,
    PROVIDER_URL_REFUSED,
    DeltaCallback,
    Provider,
    ProviderError,
    ProviderResponse,
)
from beamclaw.outbound import (
    AddressRefused,
    Target,
    UnresolvableHost,
    UnsupportedEncoding,
    iter_body,
    parse_retry_after,
)

log = logging.getLogger(__name__)

SseEvents = Iterator[tuple[str, dict]]
ParseJson = Callable[[dict], ProviderResponse]
ParseStream = Callable[[SseEvents, DeltaCallback], ProviderResponse]

# What malformed JSON or an unexpected shape raises while we pick fields out of it.
# RecursionError: deeply nested JSON from a tenant's endpoint.
_PARSE_ERRORS = (ValueError, KeyError, TypeError, IndexError, AttributeError, RecursionError)

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


# A tenant's base URL is requested at its checked IP, its name only in the TLS SNI, and
# httpx pools connections by IP: a shared client could send one tenant's request (with its
# key) over a connection opened and certificate-checked for another tenant's host. So
# each such host gets a client of its own; the least recently used go past this many.
TENANT_HOST_CLIENTS = 64
_tenant_clients: OrderedDict[str, httpx.Client] = OrderedDict()


def client_for_tenant_host(host: str) -> httpx.Client:
    """The pooled client for a tenant's base URL host, never shared with another host."""
    with _client_lock:
        client = _tenant_clients.get(host)
        if client is None:
            limits = httpx.Limits(max_connections=100, max_keepalive_connections=10)
            client = _tenant_clients[host] = httpx.Client(limits=limits)
            if len(_tenant_clients) > TENANT_HOST_CLIENTS:
                # Not closed here: another thread may be mid-call on it; its connections
                # close when it is garbage collected.
                _tenant_clients.popitem(last=False)
        _tenant_clients.move_to_end(host)
        return client


def _forget_client_in_child() -> None:
    # A forked child (Celery prefork) must not share the parent's sockets; it builds its own.
    global _client, _client_lock
    _client = None
    _client_lock = threading.Lock()
    _tenant_clients.clear()


os.register_at_fork(after_in_child=_forget_client_in_child)


class _CallbackFailed(Exception):
    """Carries an exception raised by on_delta past the response-parsing error mapping."""

    def __init__(self, original: Exception):
        super().__init__(str(original))
        self.original = original


# What the tenant reads for each failure: ours, never the remote side's words.
_SAYS = {
    PROVIDER_AUTH_FAILED: "rejected the credentials",
    PROVIDER_RATE_LIMITED: "is rate limiting requests",
    PROVIDER_TIMEOUT: "timed out",
    PROVIDER_UNAVAILABLE: "is unavailable",
    PROVIDER_BAD_REQUEST: "refused the request",
    PROVIDER_BAD_RESPONSE: "sent an answer that could not be read",
}
# Enough of an error body to log what went wrong; the rest is not read.
ERROR_BODY_BYTES = 16 * 1024
DETAIL_CHARS = 300


def _error(
    code: str, provider: str, *, status: int | None = None, detail: str = "", **kwargs
) -> ProviderError:
    message = f"{provider} {_SAYS[code]}" + (f" (HTTP {status})." if status else ".")
    return ProviderError(code, message, status=status, detail=detail[:DETAIL_CHARS], **kwargs)


def post(
    provider: Provider,
    url: str,
    *,
    headers: dict[str, str],
    body: dict,
    on_delta: DeltaCallback | None,
    parse: ParseJson,
    parse_stream: ParseStream | None = None,
    deadline: float | None = None,
) -> ProviderResponse:
    """POST `body` as JSON and parse the answer; every failure becomes a ProviderError.

    With `parse_stream` the answer is read as server-sent events and text fragments go to
    `on_delta`. A failure after a fragment went out is not retryable: a retry would send
    the caller the same text twice. The answer is read by `deadline` and up to
    `provider.max_response_bytes`, whatever the server sends meanwhile (keep-alives
    included).
    """
    client = provider.http or _client_for(provider, url)
    if deadline is None:
        deadline = time.monotonic() + provider.call_timeout
    emitted_chars = 0

    def emit(text: str) -> None:
        nonlocal emitted_chars
        if not text:
            return
        emitted_chars += len(text)
        if on_delta is not None:
            try:
                on_delta(text)
            except Exception as exc:
                raise _CallbackFailed(exc)

    try:
        targets = _targets(provider, url, deadline)
        timeout = _timeout(provider.timeout, deadline)
        with _open(client, targets, headers, body, timeout) as response:
            answer = _Body(response, provider, deadline)
            if not response.is_success:
                raise error_from_response(response, provider.name, answer.head(ERROR_BODY_BYTES))
            content_type = response.headers.get("content-type", "")
            # Some servers ignore `stream: true` and answer with one JSON document.
            if parse_stream is not None and not content_type.startswith("application/json"):
                if content_type and "event-stream" not in content_type:
                    raise ValueError(f"expected an event stream, got {content_type}")
                events = iter_sse(answer.lines(), provider.name, provider.max_document_bytes)
                result = parse_stream(events, emit)
            else:
                cap = min(provider.max_document_bytes, provider.max_response_bytes)
                result = parse(_json_object(answer.read(cap)))
    except _CallbackFailed as exc:
        raise exc.original from None
    except ProviderError as exc:
        exc.retryable = exc.retryable and not emitted_chars
        exc.partial_output_chars = emitted_chars
        _log_failure(provider, exc)
        raise
    except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError, *_PARSE_ERRORS) as exc:
        if time.monotonic() >= deadline:  # a wait cut short to end by the deadline
            error = _deadline_passed(provider)
        else:
            error = error_from_exception(exc, provider.name)
            error.retryable = error.retryable and not emitted_chars
        error.partial_output_chars = emitted_chars
        _log_failure(provider, error)
        raise error from exc
    result.model = result.model or body.get("model", "")
    return result


def _client_for(provider: Provider, url: str) -> httpx.Client:
    if provider.address_policy is None:  # the operator's base URL
        return get_http_client()
    return client_for_tenant_host(httpx.URL(url).host)


def _targets(provider: Provider, url: str, deadline: float) -> list[Target]:
    """The operator's base URL is used as is; a tenant's is checked on every attempt."""
    if provider.address_policy is None:
        return [Target(httpx.URL(url))]
    try:
        return provider.address_policy.targets(httpx.URL(url), deadline)
    except UnresolvableHost as exc:  # DNS may be back by the next attempt
        raise _error(PROVIDER_UNAVAILABLE, provider.name, detail=str(exc), retryable=True) from None
    except AddressRefused as exc:
        raise ProviderError(
            PROVIDER_URL_REFUSED, f"{provider.name} base URL refused: {exc}."
        ) from None


@contextmanager
def _open(
    client: httpx.Client,
    targets: list[Target],
    headers: dict[str, str],
    body: dict,
    timeout: httpx.Timeout,
) -> Iterator[httpx.Response]:
    """The response from the first target that accepts a connection."""
    for number, target in enumerate(targets, 1):
        request = client.build_request(
            "POST",
            target.url,
            headers={**headers, **target.headers},
            json=body,
            timeout=timeout,
            extensions=target.extensions,
        )
        try:
            response = client.send(request, stream=True)
        except httpx.ConnectError:
            if number == len(targets):
                raise
            continue
        try:
            yield response
        finally:
            response.close()
        return


def _timeout(configured: httpx.Timeout, deadline: float) -> httpx.Timeout:
    """The configured timeouts, none of them past the deadline: a server that goes quiet
    near the deadline is given up on at the deadline."""
    remaining = max(deadline - time.monotonic(), 0.001)

    def capped(value: float | None) -> float:
        return remaining if value is None else min(value, remaining)

    return httpx.Timeout(
        connect=capped(configured.connect),
        read=capped(configured.read),
        write=capped(configured.write),
        pool=capped(configured.pool),
    )


class _Body:
    """A response body read within the call's deadline and size cap.

    httpx's timeouts are per network wait, so a server sending a keep-alive every second
    would hold the call for ever; the deadline is checked on every piece that arrives.
    """

    def __init__(self, response: httpx.Response, provider: Provider, deadline: float):
        self.response = response
        self.provider = provider
        self.deadline = deadline

    def pieces(self, limit: int | None = None, cap: int | None = None) -> Iterator[bytes]:
        cap = self.provider.max_response_bytes if cap is None else cap
        received = 0
        try:
            for piece in iter_body(self.response):
                received += len(piece)
                if limit is not None and received >= limit:
                    yield piece[: len(piece) - (received - limit)]
                    return
                if received > cap:
                    raise _too_large(self.provider.name, cap)
                if time.monotonic() > self.deadline:
                    raise _deadline_passed(self.provider)
                yield piece
        except UnsupportedEncoding as exc:
            raise ValueError(str(exc)) from None

    def read(self, cap: int | None = None) -> bytes:
        return b"".join(self.pieces(cap=cap))

    def head(self, limit: int) -> bytes:
        """At most `limit` bytes of the body (for an error's log line)."""
        try:
            return b"".join(self.pieces(limit))
        except (ProviderError, httpx.HTTPError, ValueError):
            return b""

    def lines(self) -> Iterator[str]:
        """The body's lines, split at CRLF, LF or CR as server-sent events are."""
        line: list[bytes] = []
        held = b""  # a CR at the end of a piece may be the first half of a CRLF
        for piece in self.pieces():
            piece, held = held + piece, b""
            if piece.endswith(b"\r"):
                piece, held = piece[:-1], b"\r"
            first, *rest = _LINE_BREAK.split(piece)
            line.append(first)
            for part in rest:
                yield b"".join(line).decode("utf-8", errors="replace")
                line = [part]
        if held or any(line):
            yield b"".join(line).decode("utf-8", errors="replace")


_LINE_BREAK = re.compile(rb"\r\n|\r|\n")


def _too_large(provider: str, cap: int) -> ProviderError:
    return ProviderError(
        PROVIDER_RESPONSE_TOO_LARGE, f"{provider} sent an answer over {cap} bytes."
    )


def _deadline_passed(provider: Provider) -> ProviderError:
    return ProviderError(
        PROVIDER_DEADLINE_EXCEEDED, f"{provider.name} did not finish before the deadline."
    )


def _log_failure(provider: Provider, error: ProviderError) -> None:
    detail = error.detail
    key = provider.api_key
    if key and detail:
        detail = detail.replace(key, "[key]")  # some servers echo what they were sent
    log.warning("%s call failed: %s %s", provider.name, error.code, detail or error.message)


def iter_sse(
    lines: Iterable[str], provider: str = "provider", max_event_chars: int | None = None
) -> SseEvents:
    """Yield (event name, JSON data) per server-sent event; stop at `[DONE]`.

    An event's data longer than `max_event_chars` raises provider_response_too_large
    before it is parsed.

    An event carrying an `error` object (both OpenAI and Anthropic send one mid-stream)
    raises the matching ProviderError.
    """
    event, data, size = "", [], 0
    for line in chain(lines, [""]):  # "" flushes an unterminated last event
        if line.startswith(":"):  # comment / keepalive
            continue
        if line:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)
                size += len(value) + 1
                if max_event_chars is not None and size > max_event_chars:
                    raise _too_large(provider, max_event_chars)
            continue
        if data:
            text = "\n".join(data)
            if text == "[DONE]":
                return
            payload = _json_object(text)
            if isinstance(payload.get("error"), dict):
                raise error_from_stream(payload["error"], provider)
            yield event, payload
        event, data, size = "", [], 0


def _json_object(raw: bytes | str) -> dict:
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    return data


def error_from_exception(exc: Exception, provider: str = "provider") -> ProviderError:
    """Map a transport or parsing exception to a ProviderError."""
    detail = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, httpx.TimeoutException):
        return _error(PROVIDER_TIMEOUT, provider, detail=detail, retryable=True)
    if isinstance(exc, httpx.NetworkError | httpx.RemoteProtocolError | httpx.ProxyError):
        return _error(PROVIDER_UNAVAILABLE, provider, detail=detail, retryable=True)
    if isinstance(exc, (httpx.DecodingError, *_PARSE_ERRORS)):
        return _error(PROVIDER_BAD_RESPONSE, provider, detail=detail)
    # Misconfiguration (bad base URL, unsupported scheme): retrying cannot help.
    return _error(PROVIDER_UNAVAILABLE, provider, detail=detail)


def error_from_response(
    response: httpx.Response, provider: str = "provider", content: bytes = b""
) -> ProviderError:
    """Map a non-2xx response to a ProviderError (status, Retry-After; the body's error
    message only as `detail`)."""
    status = response.status_code
    detail = _error_message(content)
    retry_after = parse_retry_after(response.headers)
    if status in (401, 403):
        return _error(PROVIDER_AUTH_FAILED, provider, status=status, detail=detail)
    if status == 429:
        return _error(
            PROVIDER_RATE_LIMITED,
            provider,
            status=status,
            detail=detail,
            retryable=True,
            retry_after=retry_after,
        )
    if status == 408:
        return _error(PROVIDER_TIMEOUT, provider, status=status, detail=detail, retryable=True)
    if status >= 500:  # includes Anthropic's 529 "overloaded"
        return _error(
            PROVIDER_UNAVAILABLE,
            provider,
            status=status,
            detail=detail,
            retryable=True,
            retry_after=retry_after,
        )
    if status >= 400:
        return _error(PROVIDER_BAD_REQUEST, provider, status=status, detail=detail)
    return _error(PROVIDER_BAD_RESPONSE, provider, status=status, detail=detail)


def error_from_stream(error: dict, provider: str = "provider") -> ProviderError:
    """Map an error object sent inside a stream (HTTP status was already 200)."""
    kind = str(error.get("type") or error.get("code") or "")
    detail = f"stream error {kind}: {error.get('message', '')}"
    if "rate_limit" in kind:
        return _error(PROVIDER_RATE_LIMITED, provider, detail=detail, retryable=True)
    if "authentication" in kind or "permission" in kind:
        return _error(PROVIDER_AUTH_FAILED, provider, detail=detail)
    if "invalid_request" in kind:
        return _error(PROVIDER_BAD_REQUEST, provider, detail=detail)
    # overloaded_error, api_error, server_error and anything unknown: the provider's fault.
    return _error(PROVIDER_UNAVAILABLE, provider, detail=detail, retryable=True)


def _error_message(content: bytes) -> str:
    # Both OpenAI and Anthropic put the human message at error.message.
    try:
        error = json.loads(content)["error"]
        return str(error["message"] if isinstance(error, dict) else error)
    except (ValueError, KeyError, TypeError):
        return content[:DETAIL_CHARS].decode("utf-8", errors="replace") or "(empty body)"
