"""Anthropic Messages API adapter: the system prompt travels apart, tool calls are
`tool_use` blocks and tool results `tool_result` blocks inside a user message."""

from __future__ import annotations

import json

from agents.providers.base import (
    PROVIDER_UNAVAILABLE,
    ChatMessage,
    DeltaCallback,
    Provider,
    ProviderError,
    ProviderRequest,
    ProviderResponse,
    ToolCall,
    Usage,
)
from agents.providers.http import SseEvents, post

DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 1024  # the API requires max_tokens

# Anthropic stop reasons in the vocabulary the rest of BeamClaw uses (OpenAI's).
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
}


class AnthropicProvider(Provider):
    name = "anthropic"

    def complete_once(
        self,
        request: ProviderRequest,
        *,
        on_delta: DeltaCallback | None = None,
        deadline: float | None = None,
    ) -> ProviderResponse:
        base_url = (self.base_url or DEFAULT_BASE_URL).rstrip("/")
        headers = {"anthropic-version": API_VERSION}
        if self.api_key:
            headers["x-api-key"] = self.api_key
        return post(
            self,
            f"{base_url}/v1/messages",
            headers=headers,
            body=request_body(request),
            on_delta=on_delta,
            parse=parse_message,
            parse_stream=parse_stream if request.stream else None,
            deadline=deadline,
        )


def request_body(request: ProviderRequest) -> dict:
    system = "\n\n".join(m.content for m in request.messages if m.role == "system" and m.content)
    body: dict = {
        "model": request.model,
        "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS,
        "messages": _messages(request.messages),
    }
    if system:
        body["system"] = system
    if request.tools:
        body["tools"] = [
            {"name": t.name, "description": t.description, "input_schema": t.parameters}
            for t in request.tools
        ]
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.stream:
        body["stream"] = True
    return body


def _messages(messages: list[ChatMessage]) -> list[dict]:
    out: list[dict] = []
    for message in messages:
        if message.role == "system":
            continue
        if message.role == "tool":
            block = {
                "type": "tool_result",
                "tool_use_id": message.tool_call_id,
                "content": message.content,
            }
            previous = out[-1] if out else None
            # All results of one assistant turn belong in a single user message.
            if previous and previous["role"] == "user" and isinstance(previous["content"], list):
                previous["content"].append(block)
            else:
                out.append({"role": "user", "content": [block]})
        elif message.role == "assistant":
            blocks = [{"type": "text", "text": message.content}] if message.content else []
            blocks += [
                {"type": "tool_use", "id": c.id, "name": c.name, "input": _input(c.arguments)}
                for c in message.tool_calls
            ]
            if blocks:  # the API rejects an assistant message with no content
                out.append({"role": "assistant", "content": blocks})
        else:
            out.append({"role": "user", "content": message.content})
    return out


def _input(arguments: str) -> dict:
    # History may hold a call whose arguments the model garbled; keep them visible to it.
    try:
        value = json.loads(arguments or "{}")
    except ValueError:
        return {"raw_arguments": arguments}
    return value if isinstance(value, dict) else {"raw_arguments": arguments}


def parse_message(data: dict) -> ProviderResponse:
    blocks = data["content"]
    return ProviderResponse(
        content="".join(b["text"] for b in blocks if b["type"] == "text"),
        tool_calls=[
            ToolCall(id=b["id"], name=b["name"], arguments=json.dumps(b.get("input") or {}))
            for b in blocks
            if b["type"] == "tool_use"
        ],
        usage=_usage(data.get("usage")),
        model=data.get("model") or "",
        finish_reason=_finish(data.get("stop_reason")),
    )


def parse_stream(events: SseEvents, emit: DeltaCallback) -> ProviderResponse:
    text: list[str] = []
    blocks: dict[int, dict] = {}  # content-block index -> the block, with its JSON so far
    usage, model, stop_reason, finished = Usage(), "", None, False
    for event, data in events:
        kind = data.get("type") or event
        if kind == "message_start":
            message = data["message"]
            model = message.get("model") or model
            usage = _usage(message.get("usage"))
        elif kind == "content_block_start":
            blocks[data["index"]] = {**data["content_block"], "json": ""}
        elif kind == "content_block_delta":
            delta = data["delta"]
            if delta["type"] == "text_delta":
                text.append(delta["text"])
                emit(delta["text"])
            elif delta["type"] == "input_json_delta":
                blocks[data["index"]]["json"] += delta["partial_json"]
        elif kind == "message_delta":
            stop_reason = data["delta"].get("stop_reason") or stop_reason
            # message_delta usage is cumulative, so it replaces what message_start said.
            final = _usage(data.get("usage"))
            usage.output_tokens = final.output_tokens or usage.output_tokens
            usage.input_tokens = final.input_tokens or usage.input_tokens
        elif kind == "message_stop":
            finished = True
    if not finished:
        raise ProviderError(
            PROVIDER_UNAVAILABLE,
            "anthropic stream ended before the model finished",
            retryable=True,
        )
    return ProviderResponse(
        content="".join(text),
        tool_calls=[
            ToolCall(
                id=b["id"],
                name=b["name"],
                arguments=b["json"] or json.dumps(b.get("input") or {}),
            )
            for _, b in sorted(blocks.items())
            if b["type"] == "tool_use"
        ],
        usage=usage,
        model=model,
        finish_reason=_finish(stop_reason),
    )


def _finish(stop_reason: str | None) -> str:
    return FINISH_REASONS.get(stop_reason or "end_turn", stop_reason or "stop")


def _usage(usage: dict | None) -> Usage:
    usage = usage or {}
    # Cached prompt tokens are still input tokens the tenant pays for.
    cached = (usage.get("cache_creation_input_tokens") or 0) + (
        usage.get("cache_read_input_tokens") or 0
    )
    return Usage(
        input_tokens=(usage.get("input_tokens") or 0) + cached,
        output_tokens=usage.get("output_tokens") or 0,
    )
