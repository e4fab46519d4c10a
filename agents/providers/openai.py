"""OpenAI Chat Completions adapter; also speaks to OpenRouter, vLLM, Ollama and llama.cpp,
which serve the same wire format at their own base URL."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

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

DEFAULT_BASE_URL = "https://api.openai.com/v1"


class OpenAIProvider(Provider):
    name = "openai"

    def complete_once(
        self,
        request: ProviderRequest,
        *,
        on_delta: DeltaCallback | None = None,
        deadline: float | None = None,
    ) -> ProviderResponse:
        base_url = (self.base_url or DEFAULT_BASE_URL).rstrip("/")
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        return post(
            self,
            f"{base_url}/chat/completions",
            headers=headers,
            body=request_body(request, base_url),
            on_delta=on_delta,
            parse=parse_completion,
            parse_stream=parse_stream if request.stream else None,
            deadline=deadline,
        )


def request_body(request: ProviderRequest, base_url: str = DEFAULT_BASE_URL) -> dict:
    body: dict = {"model": request.model, "messages": [_message(m) for m in request.messages]}
    if request.tools:
        body["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    "description": t.description,
                    "parameters": t.parameters,
                },
            }
            for t in request.tools
        ]
    if request.max_tokens is not None:
        # OpenAI's reasoning models reject `max_tokens`; compatible servers only know it.
        official = urlsplit(base_url).hostname == "api.openai.com"
        body["max_completion_tokens" if official else "max_tokens"] = request.max_tokens
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def _message(message: ChatMessage) -> dict:
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    if message.role == "assistant" and message.tool_calls:
        return {
            "role": "assistant",
            "content": message.content or None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for call in message.tool_calls
            ],
        }
    return {"role": message.role, "content": message.content}


def parse_completion(data: dict) -> ProviderResponse:
    choice = data["choices"][0]
    message = choice["message"]
    content = message.get("content") or ""
    if not isinstance(content, str):
        raise TypeError("message.content is not a string")
    calls = [
        ToolCall(
            id=call.get("id") or f"call_{i}",
            name=call["function"]["name"],
            arguments=_arguments(call["function"].get("arguments")),
        )
        for i, call in enumerate(message.get("tool_calls") or [])
    ]
    return ProviderResponse(
        content=content,
        tool_calls=calls,
        usage=_usage(data.get("usage")),
        model=data.get("model") or "",
        finish_reason=choice.get("finish_reason") or "stop",
    )


def parse_stream(events: SseEvents, emit: DeltaCallback) -> ProviderResponse:
    text: list[str] = []
    calls: dict[int, dict] = {}  # tool-call index -> fragments gathered so far
    usage, model, finish = Usage(), "", None
    for _, chunk in events:
        model = chunk.get("model") or model
        if chunk.get("usage"):  # the extra last chunk asked for by include_usage
            usage = _usage(chunk["usage"])
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            if delta.get("content"):
                text.append(delta["content"])
                emit(delta["content"])
            for part in delta.get("tool_calls") or []:
                call = calls.setdefault(
                    part.get("index", len(calls)), {"id": "", "name": "", "arguments": ""}
                )
                function = part.get("function") or {}
                call["id"] = part.get("id") or call["id"]
                call["name"] = function.get("name") or call["name"]
                call["arguments"] += _arguments(function.get("arguments"), default="")
            finish = choice.get("finish_reason") or finish
    if finish is None:
        raise ProviderError(
            PROVIDER_UNAVAILABLE, "openai stream ended before the model finished", retryable=True
        )
    return ProviderResponse(
        content="".join(text),
        tool_calls=[
            ToolCall(id=c["id"] or f"call_{i}", name=c["name"], arguments=c["arguments"] or "{}")
            for i, c in sorted(calls.items())
        ],
        usage=usage,
        model=model,
        finish_reason=finish,
    )


def _arguments(value: object, default: str = "{}") -> str:
    # The spec says a JSON string; some local servers send the object itself.
    if value is None:
        return default
    return value if isinstance(value, str) else json.dumps(value)


def _usage(usage: dict | None) -> Usage:
    usage = usage or {}
    return Usage(
        input_tokens=usage.get("prompt_tokens") or 0,
        output_tokens=usage.get("completion_tokens") or 0,
    )
