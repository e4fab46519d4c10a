"""The OpenAI and Anthropic adapters against the fake model server over loopback: both wire
formats, retries, deadlines, caps and errors (no database)."""

from __future__ import annotations

import json
import threading
import time
import tracemalloc
import zlib
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from agents.providers import PROVIDERS, get_provider
from agents.providers.base import (
    ChatMessage,
    Provider,
    ProviderError,
    ProviderRequest,
    RetryPolicy,
    ToolCall,
    ToolSpec,
)
from beamclaw import outbound
from beamclaw.outbound import AddressPolicy, parse_retry_after
from testing.fake_model import FakeModelServer

CALCULATOR = ToolSpec(
    name="calculator",
    description="Evaluate an arithmetic expression.",
    parameters={"type": "object", "properties": {"expression": {"type": "string"}}},
)


@pytest.fixture
def server():
    with FakeModelServer() as server:
        yield server


@pytest.fixture(params=["openai", "anthropic"])
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


def provider_for(kind: str, server: FakeModelServer, **kwargs) -> Provider:
    url = server.url_openai if kind == "openai" else server.url_anthropic
    return get_provider(kind, api_key="test-key", base_url=url, **kwargs)


def ask(text: str, **kwargs) -> ProviderRequest:
    messages = [ChatMessage(role="system", content="Be brief."), ChatMessage("user", text)]
    return ProviderRequest(model="test-model", messages=messages, **kwargs)


# -- answers ---------------------------------------------------------------------------


def test_plain_answer_carries_content_usage_and_credentials(kind, server):
    response = provider_for(kind, server).complete(ask("hello there", stream=False))

    assert response.content == "echo: hello there"
    assert response.tool_calls == []
    assert response.finish_reason == "stop"
    assert response.model == "test-model"
    # The fake counts (9 + 11) // 4 + 1 input and 17 // 4 + 1 output tokens.
    assert (response.usage.input_tokens, response.usage.output_tokens) == (6, 5)
    [record] = server.requests
    assert record["messages"][0] == {"role": "system", "content": "Be brief."}
    if kind == "openai":
        assert record["path"] == "/v1/chat/completions"
        assert record["headers"]["authorization"] == "Bearer test-key"
    else:
        assert record["path"] == "/v1/messages"
        assert record["headers"]["x-api-key"] == "test-key"
        assert record["headers"]["anthropic-version"] == "2023-06-01"
        assert record["body"]["system"] == "Be brief."
        assert record["body"]["max_tokens"] == 1024


def test_streamed_deltas_arrive_in_order_and_join_to_the_content(kind, server):
    server.add_rule(match="count", reply="one two three four")
    deltas: list[str] = []

    response = provider_for(kind, server).complete(ask("count to four"), on_delta=deltas.append)

    assert deltas == ["one ", "two ", "three ", "four"]
    assert "".join(deltas) == response.content == "one two three four"
    assert response.usage.input_tokens == (9 + 13) // 4 + 1
    assert response.usage.output_tokens == 18 // 4 + 1
    assert server.requests[0]["body"]["stream"] is True


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "no-stream"])
def test_tool_call_round_trip_sends_a_well_formed_tool_result(kind, server, stream):
    server.add_rule(
        match=r"6\*7", tool_calls=[{"name": "calculator", "arguments": {"expression": "6*7"}}]
    )
    provider = provider_for(kind, server)
    request = ask("what is 6*7?", tools=[CALCULATOR], stream=stream)

    first = provider.complete(request)

    [call] = first.tool_calls
    assert call.name == "calculator"
    assert json.loads(call.arguments) == {"expression": "6*7"}
    assert first.finish_reason == "tool_calls"

    request.messages += [
        ChatMessage("assistant", tool_calls=[call]),
        ChatMessage("tool", content="42", tool_call_id=call.id, name="calculator"),
    ]
    final = provider.complete(request)

    assert final.content == "tool said: 42"
    body = server.requests[1]["body"]
    if kind == "openai":
        assert body["tools"][0] == {
            "type": "function",
            "function": {
                "name": "calculator",
                "description": CALCULATOR.description,
                "parameters": CALCULATOR.parameters,
            },
        }
        assert body["messages"][-2]["tool_calls"] == [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": "calculator", "arguments": call.arguments},
            }
        ]
        assert body["messages"][-1] == {"role": "tool", "tool_call_id": call.id, "content": "42"}
    else:
        assert body["tools"][0]["input_schema"] == CALCULATOR.parameters
        assert body["messages"][-2] == {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": call.id,
                    "name": "calculator",
                    "input": {"expression": "6*7"},
                }
            ],
        }
        assert body["messages"][-1] == {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "42"}],
        }


def test_anthropic_merges_consecutive_tool_results_into_one_user_message(server):
    calls = [ToolCall("toolu_1", "calculator", "{}"), ToolCall("toolu_2", "calculator", "{}")]
    request = ask("two sums", stream=False)
    request.messages += [
        ChatMessage("assistant", content="Working on it.", tool_calls=calls),
        ChatMessage("tool", content="1", tool_call_id="toolu_1"),
        ChatMessage("tool", content="2", tool_call_id="toolu_2"),
    ]

    provider_for("anthropic", server).complete(request)

    messages = server.requests[0]["body"]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert [b["tool_use_id"] for b in messages[-1]["content"]] == ["toolu_1", "toolu_2"]


# -- failures --------------------------------------------------------------------------


def test_rate_limit_waits_the_retry_after_then_succeeds(kind, server):
    server.add_rule(status=429, headers={"Retry-After": "7"}, times=1)
    sleeps: list[float] = []

    response = provider_for(kind, server, sleep=sleeps.append).complete(ask("hi"))

    assert response.attempts == 2
    assert sleeps == [7.0]
    assert response.content == "echo: hi"


@pytest.mark.parametrize("status", [500, 503, 529])
def test_server_error_storm_beyond_max_retries_is_provider_unavailable(kind, server, status):
    server.add_rule(status=status)
    sleeps: list[float] = []
    provider = provider_for(kind, server, retry=RetryPolicy(max_retries=2), sleep=sleeps.append)

    with pytest.raises(ProviderError) as failure:
        provider.complete(ask("hi"))

    assert failure.value.code == "provider_unavailable"
    assert failure.value.status == status
    assert server.call_count == 3
    assert len(sleeps) == 2


def test_auth_failure_is_not_retried(kind, server):
    server.add_rule(status=401, reply="bad key")

    with pytest.raises(ProviderError) as failure:
        provider_for(kind, server, sleep=pytest.fail).complete(ask("hi"))

    assert failure.value.code == "provider_auth_failed"
    assert failure.value.message == f"{kind} rejected the credentials (HTTP 401)."
    assert failure.value.detail == "bad key"  # for the operator's log only
    assert server.call_count == 1


REMOTE_TEXT = "internal host db-7.corp, key sk-live-123"


@pytest.mark.parametrize(
    "rule",
    [
        {"status": 400, "reply": REMOTE_TEXT},
        {"status": 500, "reply": REMOTE_TEXT},
        {"status": 502, "body": f"<html>{REMOTE_TEXT}</html>"},
        {"body": f"<html>{REMOTE_TEXT}</html>", "headers": {"Content-Type": "text/html"}},
        {
            "body": f'data: {{"error": {{"type": "invalid_request_error", "message": '
            f'"{REMOTE_TEXT}"}}}}\n\n',
            "headers": {"Content-Type": "text/event-stream"},
        },
    ],
    ids=["400", "500", "502-html", "200-html", "stream-error"],
)
def test_nothing_the_remote_side_wrote_reaches_the_error_message(kind, server, rule):
    server.add_rule(**rule)
    provider = provider_for(kind, server, retry=RetryPolicy(max_retries=0))

    with pytest.raises(ProviderError) as failure:
        provider.complete(ask("hi"))

    assert failure.value.code.startswith("provider_")
    assert "db-7" not in failure.value.message and "sk-live" not in failure.value.message
    assert failure.value.message.startswith(f"{kind} ") and len(failure.value.message) < 80


# -- a tenant's base URL ---------------------------------------------------------------


def test_a_tenant_base_url_at_a_private_address_is_refused_before_any_request(kind, server):
    provider = provider_for(kind, server, address_policy=AddressPolicy(allow_private=False))

    with pytest.raises(ProviderError) as failure:
        provider.complete(ask("hi"))

    assert failure.value.code == "provider_url_refused"
    assert "host '127.0.0.1' does not resolve to a public address" in failure.value.message
    assert "loopback" not in failure.value.message
    assert not failure.value.retryable
    assert server.call_count == 0


def test_a_tenant_base_url_by_name_is_called_at_its_checked_address(kind, server):
    url = (server.url_openai if kind == "openai" else server.url_anthropic).replace(
        "127.0.0.1", "localhost"
    )
    provider = get_provider(
        kind, api_key="k", base_url=url, address_policy=AddressPolicy(allow_private=True)
    )

    assert provider.complete(ask("hi")).content == "echo: hi"
    assert server.requests[0]["headers"]["host"] == f"localhost:{server.port}"


def test_a_tenant_host_that_does_not_resolve_is_unavailable_and_retried(kind):
    sleeps: list[float] = []
    provider = get_provider(
        kind,
        api_key="k",
        base_url="http://no-such-host.invalid/v1",
        address_policy=AddressPolicy(allow_private=True),
        retry=RetryPolicy(max_retries=2),
        sleep=sleeps.append,
    )

    with pytest.raises(ProviderError) as failure:
        provider.complete(ask("hi"))

    assert failure.value.code == "provider_unavailable"
    assert len(sleeps) == 2  # DNS may be back by the next attempt


def test_tenant_hosts_on_one_address_never_share_a_connection(kind, server, monkeypatch):
    # Two tenants' hosts that resolve to the same address (one shared front, say).
    monkeypatch.setattr(outbound, "lookup", lambda host: [(0, 0, 0, "", ("127.0.0.1", 0))])
    path = "/v1" if kind == "openai" else ""

    def call(host: str) -> None:
        provider = get_provider(
            kind,
            api_key=f"key-of-{host}",
            base_url=f"http://{host}:{server.port}{path}",
            address_policy=AddressPolicy(allow_private=True),
        )
        provider.complete(ask("hi", stream=False))  # a streamed answer ends its connection

    call("tenant-a.example")
    call("tenant-a.example")
    call("tenant-b.example")

    ports = [record["client_port"] for record in server.requests]
    assert ports[0] == ports[1]  # one host's calls do reuse their connection
    assert ports[2] != ports[0]


@pytest.mark.usefixtures("hanging_dns")
def test_a_tenant_host_whose_dns_hangs_is_unavailable_after_the_dns_timeout(kind, settings):
    settings.OUTBOUND_DNS_TIMEOUT = 0.5
    provider = get_provider(
        kind,
        api_key="k",
        base_url="http://slow-dns.example/v1",
        address_policy=AddressPolicy(allow_private=True),
        retry=RetryPolicy(max_retries=0),
    )
    started = time.monotonic()

    with pytest.raises(ProviderError) as failure:
        provider.complete(ask("hi"))

    assert failure.value.code == "provider_unavailable"
    assert failure.value.retryable  # DNS may answer next time
    assert time.monotonic() - started < 5


@pytest.mark.usefixtures("hanging_dns")
def test_a_hanging_dns_lookup_ends_by_the_call_deadline(kind, settings):
    settings.OUTBOUND_DNS_TIMEOUT = 60
    provider = get_provider(
        kind,
        api_key="k",
        base_url="http://slow-dns.example/v1",
        address_policy=AddressPolicy(allow_private=True),
        retry=RetryPolicy(max_retries=0),
        call_timeout=0.5,
    )
    started = time.monotonic()

    with pytest.raises(ProviderError):
        provider.complete(ask("hi"))

    assert time.monotonic() - started < 10


# -- deadlines and size ----------------------------------------------------------------


def test_keep_alives_do_not_hold_a_call_past_its_deadline(kind, server):
    server.add_rule(keepalive_every=0.2, keepalive_for=20)
    provider = provider_for(
        kind, server, timeout=httpx.Timeout(10.0), call_timeout=1.0, sleep=pytest.fail
    )
    started = time.monotonic()

    with pytest.raises(ProviderError) as failure:
        provider.complete(ask("hi"))

    assert failure.value.code == "provider_deadline_exceeded"
    assert time.monotonic() - started < 5  # not the 20 s the server would keep it open


def test_a_call_ends_by_the_callers_deadline_when_that_comes_first(kind, server):
    server.add_rule(latency=20)
    provider = provider_for(kind, server, timeout=httpx.Timeout(60.0), sleep=pytest.fail)
    started = time.monotonic()

    with pytest.raises(ProviderError) as failure:
        provider.complete(ask("hi"), deadline=time.monotonic() + 1.0)

    assert failure.value.code == "provider_deadline_exceeded"
    assert time.monotonic() - started < 5


def test_a_retry_that_could_not_finish_by_the_deadline_is_not_waited_for(kind, server):
    server.add_rule(status=429, headers={"Retry-After": "20"})

    with pytest.raises(ProviderError) as failure:
        provider_for(kind, server, call_timeout=5.0, sleep=pytest.fail).complete(ask("hi"))

    assert failure.value.code == "provider_rate_limited"
    assert server.call_count == 1


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "no-stream"])
def test_an_answer_over_the_size_cap_fails_the_call(kind, server, stream):
    server.add_rule(reply="word " * 40_000)  # 200 KB of text

    with pytest.raises(ProviderError) as failure:
        provider_for(kind, server, max_response_bytes=50_000, sleep=pytest.fail).complete(
            ask("hi", stream=stream)
        )

    assert failure.value.code == "provider_response_too_large"
    assert not failure.value.retryable


def test_a_stream_cut_short_says_how_much_text_already_went_out(kind, server):
    server.add_rule(reply="word " * 40_000)
    received: list[str] = []

    with pytest.raises(ProviderError) as failure:
        provider_for(kind, server, max_response_bytes=50_000, sleep=pytest.fail).complete(
            ask("hi", stream=True), on_delta=received.append
        )

    assert failure.value.code == "provider_response_too_large"
    assert failure.value.partial_output_chars == len("".join(received)) > 0


def test_a_non_streamed_answer_over_the_document_cap_fails_under_the_answer_cap(kind, server):
    server.add_rule(reply="word " * 100_000)  # 500 KB of text in one JSON document
    provider = provider_for(
        kind, server, max_response_bytes=10_000_000, max_document_bytes=100_000, sleep=pytest.fail
    )

    with pytest.raises(ProviderError) as failure:
        provider.complete(ask("hi", stream=False))

    assert failure.value.code == "provider_response_too_large"


def test_a_streamed_answer_may_outgrow_the_document_cap_in_small_events(kind, server):
    server.add_rule(reply="word " * 30_000)  # 150 KB of text, in events of a few words
    provider = provider_for(
        kind, server, max_response_bytes=10_000_000, max_document_bytes=100_000, sleep=pytest.fail
    )

    response = provider.complete(ask("hi", stream=True))

    assert response.content == "word " * 30_000


def test_one_streamed_event_over_the_document_cap_fails_the_call(kind, server):
    event = json.dumps({"padding": "x" * 300_000})
    server.add_rule(
        body=f"data: {event}\n\n".encode(), headers={"Content-Type": "text/event-stream"}
    )
    provider = provider_for(
        kind, server, max_response_bytes=10_000_000, max_document_bytes=100_000, sleep=pytest.fail
    )

    with pytest.raises(ProviderError) as failure:
        provider.complete(ask("hi", stream=True))

    assert failure.value.code == "provider_response_too_large"


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "no-stream"])
def test_deeply_nested_json_is_a_bad_response(kind, server, stream):
    nested = '{"x": ' + "[" * 200_000 + "]" * 200_000 + "}"
    if stream:
        server.add_rule(
            body=f"data: {nested}\n\n".encode(), headers={"Content-Type": "text/event-stream"}
        )
    else:
        server.add_rule(body=nested.encode(), headers={"Content-Type": "application/json"})

    with pytest.raises(ProviderError) as failure:
        provider_for(kind, server, sleep=pytest.fail).complete(ask("hi", stream=stream))

    assert failure.value.code == "provider_bad_response"


def test_a_compressed_answer_is_capped_as_it_is_decompressed(kind, server):
    compressor = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    bomb = b"".join(compressor.compress(b" " * 1_000_000) for _ in range(100))
    bomb += compressor.flush()  # 100 MB of spaces, about 100 KB on the wire
    server.add_rule(body=bomb, headers={"Content-Encoding": "gzip"})
    provider = provider_for(kind, server, max_response_bytes=1_000_000, sleep=pytest.fail)
    tracemalloc.start()
    try:
        with pytest.raises(ProviderError) as failure:
            provider.complete(ask("hi", stream=False))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert failure.value.code == "provider_response_too_large"
    assert peak < 10_000_000, f"peak {peak / 1e6:.1f} MB"


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "no-stream"])
def test_garbage_body_is_a_bad_response_and_not_retried(kind, server, stream):
    server.add_rule(body="<html>502 from some proxy", headers={"Content-Type": "text/html"})

    with pytest.raises(ProviderError) as failure:
        provider_for(kind, server, sleep=pytest.fail).complete(ask("hi", stream=stream))

    assert failure.value.code == "provider_bad_response"
    assert server.call_count == 1


def test_missing_fields_are_a_bad_response(kind, server):
    server.add_rule(body='{"id": "x"}')

    with pytest.raises(ProviderError) as failure:
        provider_for(kind, server).complete(ask("hi", stream=False))

    assert failure.value.code == "provider_bad_response"


def test_read_timeout_is_a_retryable_provider_timeout(kind, server):
    server.add_rule(latency=2.0)
    provider = provider_for(kind, server, timeout=httpx.Timeout(0.2))

    with pytest.raises(ProviderError) as failure:
        provider.complete_once(ask("hi"))

    assert failure.value.code == "provider_timeout"
    assert failure.value.retryable


def test_connection_refused_is_a_retryable_provider_unavailable(kind):
    with FakeModelServer() as server:
        provider = provider_for(kind, server)  # its URL points at a port that is now closed

    with pytest.raises(ProviderError) as failure:
        provider.complete_once(ask("hi"))

    assert failure.value.code == "provider_unavailable"
    assert failure.value.retryable


def test_stream_cut_after_text_went_out_is_not_retried(kind, server):
    if kind == "openai":
        partial = 'data: {"choices": [{"index": 0, "delta": {"content": "Hel"}}]}\n\n'
    else:
        partial = (
            'event: content_block_start\ndata: {"type": "content_block_start", "index": 0,'
            ' "content_block": {"type": "text", "text": ""}}\n\n'
            'event: content_block_delta\ndata: {"type": "content_block_delta", "index": 0,'
            ' "delta": {"type": "text_delta", "text": "Hel"}}\n\n'
        )
    server.add_rule(body=partial, headers={"Content-Type": "text/event-stream"})
    deltas: list[str] = []

    with pytest.raises(ProviderError) as failure:
        provider_for(kind, server, sleep=pytest.fail).complete(ask("hi"), on_delta=deltas.append)

    assert failure.value.code == "provider_unavailable"
    assert not failure.value.retryable  # a retry would stream "Hel" to the caller twice
    assert deltas == ["Hel"]
    assert server.call_count == 1


def test_an_exception_from_on_delta_propagates_unchanged(kind, server):
    class Cancelled(KeyError):  # a KeyError must not be mistaken for a bad response
        pass

    def cancel(_: str) -> None:
        raise Cancelled("turn cancelled")

    with pytest.raises(Cancelled):
        provider_for(kind, server).complete(ask("hi"), on_delta=cancel)


def test_retry_after_accepts_seconds_milliseconds_and_http_dates():
    in_ten_seconds = format_datetime(datetime.now(UTC) + timedelta(seconds=10), usegmt=True)

    assert parse_retry_after(httpx.Headers({"Retry-After": "3"})) == 3.0
    assert parse_retry_after(httpx.Headers({"retry-after-ms": "250"})) == 0.25
    assert 8 < parse_retry_after(httpx.Headers({"Retry-After": in_ten_seconds})) <= 10
    assert parse_retry_after(httpx.Headers({"Retry-After": "soon"})) is None
    assert parse_retry_after(httpx.Headers()) is None


# -- registry and fake server ----------------------------------------------------------


def test_registry_builds_providers_by_name_and_rejects_unknown_names():
    assert set(PROVIDERS) >= {"openai", "anthropic", "offline"}
    assert get_provider("anthropic", api_key="k").api_key == "k"
    with pytest.raises(ValueError, match="unknown provider 'nope'"):
        get_provider("nope")


def test_fake_model_records_peak_concurrency_and_drops_used_up_rules(server):
    server.add_rule(latency=0.3, reply="slow", times=4)
    provider = provider_for("openai", server)
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda: results.append(provider.complete(ask("x")).content))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=5)

    assert results == ["slow"] * 4
    assert server.max_concurrent == 4
    assert server.concurrent_by(lambda r: r["format"]) == {"openai": 4}
    assert provider.complete(ask("after")).content == "echo: after"  # the rule is used up
