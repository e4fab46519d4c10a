"""A deterministic stand-in model with no network: the demo default. It recognises a few
requests (arithmetic, the time, "remember X is Y", "ask <agent>: <task>") and answers them
with the offered tools."""

from __future__ import annotations

import json
import re

from agents.providers.base import (
    ChatMessage,
    DeltaCallback,
    Provider,
    ProviderRequest,
    ProviderResponse,
    ToolCall,
    Usage,
)

HINT = "(offline model — set OPENAI_API_KEY or ANTHROPIC_API_KEY for a real one)"

_ARITHMETIC_CUE = re.compile(
    r"\b(calculate|compute|evaluate|solve|what is|what's|how much is)\b", re.IGNORECASE
)
_EXPRESSION = re.compile(r"[\d(.][\d\s.+\-*/()%]*[\d)]")
_OPERATOR = re.compile(r"[\d)]\s*[-+*/%]\s*[-\d(.]")
_TIME = re.compile(
    r"\b(what time|time is it|the time|current time|what day|what date|the date|today's date)\b",
    re.IGNORECASE,
)
_REMEMBER = re.compile(r"^\s*remember(?: that)?\s+(.+?)\s+(?:is|are|=)\s+(.+?)[.!]?\s*$", re.I)
_RECALL = re.compile(
    r"^\s*(?:what(?:'s| is| was| are)|recall|do you remember)\s+(.+?)[?.!]?\s*$", re.I
)

# "Ask assistant: what is 12*7?", "delegate to researcher: find ...", "ask `ops` to ...".
_DELEGATE = re.compile(
    r"^\s*(?:please\s+)?(?:ask|delegate to|have)\s+(?:the\s+)?(?:agent\s+)?[`\"']?"
    r"(?P<agent>[a-z0-9][a-z0-9_-]*)[`\"']?\s*(?::|,|\bto\b)\s*(?P<task>\S.*?)\s*$",
    re.IGNORECASE | re.DOTALL,
)


class OfflineProvider(Provider):
    name = "offline"

    def complete_once(
        self,
        request: ProviderRequest,
        *,
        on_delta: DeltaCallback | None = None,
        deadline: float | None = None,
    ) -> ProviderResponse:
        messages = request.messages
        offered = {tool.name for tool in request.tools}
        last = messages[-1] if messages else ChatMessage(role="user")
        reply, call = "", None
        if last.role == "tool":
            reply = _answer_from_tool(last, messages)
        else:
            text = _last_user_text(messages)
            call = _tool_call(text, offered)
            if call is None:
                reply = f'You said: "{text}". {HINT}' if text else f"Hello! {HINT}"
        calls = [ToolCall(id=f"call_offline_{len(messages)}", **call)] if call else []
        if request.stream and on_delta is not None:
            for piece in re.findall(r"\s*\S+\s*", reply):  # word by word, like a real stream
                on_delta(piece)
        spoken = sum(len(m.content) for m in messages)
        written = len(reply) + sum(len(c.arguments) for c in calls)
        return ProviderResponse(
            content=reply,
            tool_calls=calls,
            usage=Usage(input_tokens=_tokens(spoken), output_tokens=_tokens(written)),
            model=request.model or "offline",
            finish_reason="tool_calls" if calls else "stop",
        )


def _tool_call(text: str, offered: set[str]) -> dict | None:
    """The tool call the text asks for, as {"name", "arguments"}, or None."""
    if "spawn_agent" in offered and (found := _DELEGATE.match(text)):
        return _call("spawn_agent", agent=found.group("agent").lower(), task=found.group("task"))
    if "session_memory" in offered and (found := _REMEMBER.match(text)):
        value = found.group(2).strip()
        return _call("session_memory", action="set", key=_key(found.group(1)), value=value)
    expression = _expression(text)
    if "calculator" in offered and expression:
        return _call("calculator", expression=expression)
    if "current_time" in offered and _TIME.search(text):
        return _call("current_time")
    if "session_memory" in offered and (found := _RECALL.match(text)):
        return _call("session_memory", action="get", key=_key(found.group(1)))
    return None


def _call(name: str, **arguments: str) -> dict:
    return {"name": name, "arguments": json.dumps(arguments)}


def _expression(text: str) -> str | None:
    candidates = [c.strip() for c in _EXPRESSION.findall(text) if _OPERATOR.search(c)]
    if not candidates:
        return None
    expression = max(candidates, key=len)
    # A bare "12*7" is a sum; "meet on 2025-11-26" is not, unless asked to calculate.
    if expression != text.strip(" ?=!.") and not _ARITHMETIC_CUE.search(text):
        return None
    return expression


def _key(phrase: str) -> str:
    words = phrase.lower().strip(" ?.!\"'").split()
    if words and words[0] in ("my", "the", "our", "your"):
        words = words[1:]
    return " ".join(words)


def _answer_from_tool(result: ChatMessage, messages: list[ChatMessage]) -> str:
    call = _call_answered_by(result, messages)
    name = result.name or (call.name if call else "tool")
    arguments = _json(call.arguments) if call else {}
    arguments = arguments if isinstance(arguments, dict) else {}
    if result.content.startswith("error:"):  # the registry's way of reporting a failure
        return f"The {name} tool failed ({result.content[len('error:') :].strip()})."
    value = _json(result.content)
    if name == "current_time" and isinstance(value, dict) and "time" in value:
        moment = str(value["time"])
        zone, weekday = value.get("timezone", ""), value.get("weekday", "")
        return f"It is {moment[11:16]} {zone} on {weekday}, {moment[:10]}."
    if name == "session_memory" and isinstance(value, dict):
        key = value.get("key") or arguments.get("key", "that")
        if arguments.get("action") == "set":
            return f"Got it, I'll remember that {key} is {arguments.get('value')}."
        if not value.get("found"):
            return f"I don't know {key} yet."
        return f"{key.capitalize()} is {value.get('value')}."
    shown = value if isinstance(value, str) else json.dumps(value)
    if name == "spawn_agent":
        return f"{arguments.get('agent', 'The other agent')} answered: {shown}"
    if name == "calculator":
        return f"The result is {shown}."
    return f"The {name} tool returned: {shown}."


def _call_answered_by(result: ChatMessage, messages: list[ChatMessage]) -> ToolCall | None:
    for message in messages:
        for call in message.tool_calls:
            if call.id == result.tool_call_id:
                return call
    return None


def _json(text: str) -> object:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _last_user_text(messages: list[ChatMessage]) -> str:
    return next((m.content.strip() for m in reversed(messages) if m.role == "user"), "")


def _tokens(chars: int) -> int:
    return max(1, (chars + 3) // 4)
