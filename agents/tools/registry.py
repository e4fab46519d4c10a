"""The tools an agent may call: lookup by name, specs for the model, and `execute`, which
validates arguments, runs the tool under its timeout and turns every outcome into a ToolResult.
"""

from __future__ import annotations

import contextvars
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

import jsonschema
from django.db import connections

from agents.providers.base import ToolSpec

from .base import Tool, ToolContext, ToolError

log = logging.getLogger(__name__)

# Stable codes a tool result can fail with; the model and the API both see them.
UNKNOWN_TOOL = "unknown_tool"
INVALID_ARGUMENTS = "invalid_arguments"
TOOL_ERROR = "tool_error"
TOOL_TIMEOUT = "tool_timeout"
TOOL_CRASHED = "tool_crashed"

# One pool for the whole process. Python cannot kill a thread: a tool that outlives its
# timeout is abandoned, keeps its worker until it returns, and the interpreter waits for it
# at exit. So every tool must also bound its own work (sockets with timeouts, size caps).
_executor = ThreadPoolExecutor(max_workers=32, thread_name_prefix="beamclaw-tool")

_tools: dict[str, Tool] = {}
_validators: dict[str, jsonschema.protocols.Validator] = {}


@dataclass
class ToolResult:
    ok: bool
    content: str  # what goes back to the model: JSON of the result, or "error: <code>: ..."
    error_code: str | None
    duration_ms: int


def register(tool: Tool) -> Tool:
    """Add a tool; its schema is checked now so a broken one fails at import, not mid-turn."""
    if not tool.name:
        raise ValueError(f"{type(tool).__name__} has no name")
    if tool.name in _tools:
        raise ValueError(f"a tool named {tool.name!r} is already registered")
    validator_class = jsonschema.validators.validator_for(tool.parameters)
    validator_class.check_schema(tool.parameters)
    _tools[tool.name] = tool
    _validators[tool.name] = validator_class(tool.parameters)
    return tool


def unregister(name: str) -> None:
    """Remove a tool (for tests that register their own)."""
    _tools.pop(name, None)
    _validators.pop(name, None)


def get(name: str) -> Tool | None:
    return _tools.get(name)


def names() -> list[str]:
    return sorted(_tools)


def specs_for(allowed: list[str]) -> list[ToolSpec]:
    """Specs of the allowed tools, sorted by name so the prompt is the same on every call."""
    return [
        ToolSpec(name=tool.name, description=tool.description, parameters=tool.parameters)
        for name, tool in sorted(_tools.items())
        if name in allowed
    ]


def execute(name: str, raw_arguments: str, ctx: ToolContext, *, allowed: list[str]) -> ToolResult:
    """Run one tool call from the model. Never raises: every failure is a ToolResult."""
    started = time.monotonic()

    def result(ok: bool, content: str, error_code: str | None = None) -> ToolResult:
        return ToolResult(ok, content, error_code, int((time.monotonic() - started) * 1000))

    def failure(code: str, message: str) -> ToolResult:
        return result(False, f"error: {code}: {message}", code)

    tool = _tools.get(name)
    if tool is None or name not in allowed:
        return failure(UNKNOWN_TOOL, f"no tool named {name!r} is available")
    try:
        args = _parse_arguments(raw_arguments, _validators[name])
    except ValueError as exc:
        return failure(INVALID_ARGUMENTS, str(exc))

    future = _executor.submit(contextvars.copy_context().run, _run, tool, args, ctx)
    try:
        value = future.result(timeout=tool.timeout)
        content = value if isinstance(value, str) else json.dumps(value, allow_nan=False)
    except FutureTimeout:
        future.cancel()  # still queued behind abandoned tools: never start it late
        log.warning("tool %s timed out after %.1f s", name, tool.timeout)
        return failure(TOOL_TIMEOUT, f"{name} did not finish within {tool.timeout:g} s")
    except ToolError as exc:
        return failure(TOOL_ERROR, str(exc) or type(exc).__name__)
    except Exception as exc:
        log.exception("tool %s crashed", name)
        return failure(TOOL_CRASHED, f"{type(exc).__name__}: {exc}")
    return result(True, content)


def _parse_arguments(raw: str, validator: jsonschema.protocols.Validator) -> dict[str, Any]:
    """The arguments object, or ValueError with a message the model can act on."""
    if not (raw or "").strip():
        args: Any = {}  # some models send "" for a call without arguments
    else:
        try:
            args = json.loads(raw)
        except ValueError as exc:
            raise ValueError(f"arguments are not valid JSON ({exc})") from None
    if not isinstance(args, dict):
        raise ValueError("arguments must be a JSON object")
    error = jsonschema.exceptions.best_match(validator.iter_errors(args))
    if error is not None:
        where = "/".join(str(part) for part in error.absolute_path)
        raise ValueError(f"{where}: {error.message}" if where else error.message)
    return args


def _run(tool: Tool, args: dict[str, Any], ctx: ToolContext) -> Any:
    try:
        return tool.run(args, ctx)
    finally:
        # Pool threads outlive requests, so Django never closes their connections for us.
        connections.close_all()
