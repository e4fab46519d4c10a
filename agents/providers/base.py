"""The one interface every model provider implements, and the plain data it speaks.

The turn loop only ever sees these dataclasses; each adapter translates them to
and from its wire format (OpenAI Chat Completions, Anthropic Messages, ...).
"""

from __future__ import annotations

import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from beamclaw.outbound import AddressPolicy


@dataclass
class ToolCall:
    id: str
    name: str
    # Raw JSON text exactly as the model produced it; the loop parses it and
    # reports malformed arguments back to the model as a tool error.
    arguments: str


@dataclass
class ChatMessage:
    role: str  # "system" | "user" | "assistant" | "tool"
    content: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    tool_call_id: str | None = None  # set on role="tool"
    name: str | None = None  # tool name on role="tool"


@dataclass
class ToolSpec:
    name: str
    description: str
    parameters: dict  # JSON schema of the arguments object


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass
class ProviderRequest:
    model: str
    messages: list[ChatMessage]  # the system prompt, when any, comes first
    tools: list[ToolSpec] = field(default_factory=list)
    max_tokens: int | None = None
    temperature: float | None = None
    stream: bool = True


@dataclass
class ProviderResponse:
    content: str
    tool_calls: list[ToolCall]
    usage: Usage
    model: str
    finish_reason: str = "stop"
    attempts: int = 1


class ProviderError(Exception):
    """A call that did not produce an answer; `code` is what the turn fails with.

    `message` is ours and short: the tenant reads it. What the remote side said goes in
    `detail`, for the operator's log only: a tenant's endpoint may answer anything.
    `partial_output_chars` counts the text already streamed to the caller before the
    failure: that output was delivered, so the call is billed for it.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        retryable: bool = False,
        retry_after: float | None = None,
        status: int | None = None,
        detail: str = "",
        partial_output_chars: int = 0,
    ):
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status
        self.detail = detail
        self.partial_output_chars = partial_output_chars


# Stable failure codes a turn can end with because of its provider.
PROVIDER_AUTH_FAILED = "provider_auth_failed"
PROVIDER_UNAVAILABLE = "provider_unavailable"
PROVIDER_RATE_LIMITED = "provider_rate_limited"
PROVIDER_TIMEOUT = "provider_timeout"
PROVIDER_BAD_REQUEST = "provider_bad_request"
PROVIDER_BAD_RESPONSE = "provider_bad_response"
PROVIDER_DEADLINE_EXCEEDED = "provider_deadline_exceeded"  # the whole call ran too long
PROVIDER_RESPONSE_TOO_LARGE = "provider_response_too_large"
PROVIDER_URL_REFUSED = "provider_url_refused"  # a tenant's base URL reaches a private address
PROVIDER_KEY_REQUIRED = "provider_key_required"  # a tenant's base URL without the tenant's key

# Defaults for a provider built without settings (tests, scripts); the runtime passes
# PROVIDER_CALL_DEADLINE and PROVIDER_MAX_RESPONSE_BYTES.
DEFAULT_CALL_TIMEOUT = 300.0
DEFAULT_MAX_RESPONSE_BYTES = 32_000_000
# One JSON document (a whole non-streamed answer, or one streamed event) is parsed in one
# go, at many times its size in memory, so it gets a much smaller cap than a stream.
DEFAULT_MAX_DOCUMENT_BYTES = 2_000_000

DeltaCallback = Callable[[str], None]


@dataclass
class RetryPolicy:
    max_retries: int = 3
    backoff_base: float = 0.5  # seconds; doubles each attempt, with jitter
    backoff_max: float = 10.0
    retry_after_max: float = 30.0  # never honour a Retry-After longer than this

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.retry_after_max)
        backoff = min(self.backoff_base * (2 ** (attempt - 1)), self.backoff_max)
        return backoff * (0.5 + random.random() / 2)


class Provider(ABC):
    """An adapter for one wire format. Instances are cheap; the HTTP client is shared.

    `timeout` bounds each network wait; `call_timeout` (seconds) bounds a whole call,
    retries included, `max_response_bytes` the size of one answer and
    `max_document_bytes` the size of one JSON document in it. With an
    `address_policy` the base URL is a tenant's: it is checked (and pinned to the
    checked address) on every attempt, since DNS can change between attempts.
    """

    name: str = ""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        http: httpx.Client | None = None,
        timeout: httpx.Timeout | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        call_timeout: float = DEFAULT_CALL_TIMEOUT,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES,
        address_policy: AddressPolicy | None = None,
    ):
        self.api_key = api_key
        self.base_url = base_url
        self.http = http
        self.timeout = timeout or httpx.Timeout(60.0, connect=5.0)
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.call_timeout = call_timeout
        self.max_response_bytes = max_response_bytes
        self.max_document_bytes = max_document_bytes
        self.address_policy = address_policy

    def complete(
        self,
        request: ProviderRequest,
        *,
        on_delta: DeltaCallback | None = None,
        before_attempt: Callable[[int], None] | None = None,
        deadline: float | None = None,
    ) -> ProviderResponse:
        """Call the model, retrying 429/5xx/timeouts with backoff; raise ProviderError.

        `before_attempt(n)` runs before every attempt (the limiter hooks in there,
        so a retry is checked like a first call). The call ends by `call_timeout`, or by
        `deadline` (a time.monotonic() value, e.g. the turn's) when that comes first.
        """
        own_deadline = time.monotonic() + self.call_timeout
        deadline = own_deadline if deadline is None else min(deadline, own_deadline)
        attempt = 0
        while True:
            attempt += 1
            if before_attempt is not None:
                before_attempt(attempt)
            try:
                response = self.complete_once(request, on_delta=on_delta, deadline=deadline)
            except ProviderError as exc:
                if not exc.retryable or attempt > self.retry.max_retries:
                    raise
                delay = self.retry.delay(attempt, exc.retry_after)
                if time.monotonic() + delay >= deadline:
                    raise  # no time left for another attempt
                self.sleep(delay)
                continue
            response.attempts = attempt
            return response

    @abstractmethod
    def complete_once(
        self,
        request: ProviderRequest,
        *,
        on_delta: DeltaCallback | None = None,
        deadline: float | None = None,
    ) -> ProviderResponse:
        """One attempt, no retries, done by `deadline` (time.monotonic(); None: now plus
        `call_timeout`). Map every failure to a ProviderError."""
