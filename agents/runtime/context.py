"""What the model sees: the system prompt plus as much recent history as fits the budget."""

from __future__ import annotations

from agents.models import Agent, Message, MessageRole
from agents.providers.base import ChatMessage, ToolCall

# Never load more than this many rows per step; older ones would not fit any budget.
HISTORY_WINDOW = 400


def estimate_tokens(text: str) -> int:
    # ~4 characters per token for English; a budget guard, not a bill.
    return tokens_for_chars(len(text))


def tokens_for_chars(chars: int) -> int:
    """The estimate for `chars` characters of text (a cut-short answer is billed by it)."""
    return chars // 4 + 4


def load_history(session_id: int) -> list[Message]:
    rows = Message.objects.filter(session_id=session_id, seq__isnull=False).order_by("-seq")[
        :HISTORY_WINDOW
    ]
    return list(reversed(rows))


def to_chat(message: Message) -> ChatMessage:
    return ChatMessage(
        role=message.role,
        content=message.content,
        tool_calls=[ToolCall(**call) for call in message.tool_calls or []],
        tool_call_id=message.tool_call_id or None,
        name=message.name or None,
    )


def _cost(message: Message) -> int:
    calls = "".join(c.get("arguments", "") + c.get("name", "") for c in message.tool_calls or [])
    return estimate_tokens(message.content + calls)


def build_context(agent: Agent, history: list[Message]) -> list[ChatMessage]:
    """System prompt first (always kept), then the newest messages that fit the budget.

    Older messages are dropped whole; a tool result is never kept without the assistant
    message that asked for it, since providers reject such a history.
    """
    budget = agent.context_token_budget - estimate_tokens(agent.system_prompt)
    kept: list[Message] = []
    for message in reversed(history):
        cost = _cost(message)
        if kept and cost > budget:
            break
        budget -= cost
        kept.append(message)
    kept.reverse()
    while kept and kept[0].role == MessageRole.TOOL:
        kept.pop(0)
    dropped = len(history) - len(kept)

    system = agent.system_prompt
    if dropped:
        note = f"[{dropped} earlier message(s) of this conversation were omitted to fit.]"
        system = f"{system}\n\n{note}" if system else note
    context = [ChatMessage(role=MessageRole.SYSTEM, content=system)] if system else []
    return context + [to_chat(m) for m in kept]
