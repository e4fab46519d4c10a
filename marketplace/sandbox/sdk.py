"""The tool SDK: what package tool code imports inside the sandbox, as `beamclaw_sdk`.

    from beamclaw_sdk import ToolError, log, tmp_dir, tool

    @tool(description="Count the words of a text.")
    def count_words(text: str) -> dict:
        if not isinstance(text, str):
            raise ToolError("text must be a string")
        log("counting", len(text), "characters")
        return {"words": len(text.split())}

The entry point `module.path:function` is called with the call's arguments as keyword
arguments; what it returns (JSON-serialisable) is the result. Raising ToolError fails the call
with its message; any other exception fails it with the exception's type and text. What the
tool prints or logs is captured (up to the call's log limit). The tool may read the files of its
own package and read and write files under `tmp_dir()`, which is removed after the call; it has
the standard library and nothing else: no network, no programs, no other processes.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

_tmp_dir: Path | None = None


class ToolError(Exception):
    """Raise to fail the call with this message (error code `tool_error`)."""


def tool(
    function: Callable[..., Any] | None = None, *, name: str = "", description: str = ""
) -> Any:
    """Mark a function as a tool, with `@tool` or `@tool(name=..., description=...)`.

    The function is returned unchanged; the mark names it for a reader and for checks of the
    package's manifest.
    """

    def mark(target: Callable[..., Any]) -> Callable[..., Any]:
        target.__beamclaw_tool__ = {  # type: ignore[attr-defined]
            "name": name or target.__name__,
            "description": description or (target.__doc__ or "").strip(),
        }
        return target

    return mark(function) if function is not None else mark


def log(*parts: object) -> None:
    """Add a line to the call's captured log."""
    print(*parts, file=sys.stderr)


def tmp_dir() -> Path:
    """This call's private, writable directory (removed when the call ends)."""
    if _tmp_dir is None:
        raise ToolError("tmp_dir() is only available inside a tool call")
    return _tmp_dir
