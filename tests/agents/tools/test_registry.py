"""The tool registry: which tools there are, which an agent may call, and how a call fails
(unknown tool, bad arguments, timeout, crash), called the way the turn loop calls them."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from agents.tools import registry
from agents.tools.base import Tool, ToolContext
from tests.agents.tools.calling import call


def test_built_in_tools_are_registered():
    assert {"calculator", "current_time", "http_fetch", "session_memory"} <= set(registry.names())


def test_specs_are_only_the_allowed_tools_in_name_order():
    specs = registry.specs_for(["session_memory", "no_such_tool", "calculator"])

    assert [spec.name for spec in specs] == ["calculator", "session_memory"]
    assert specs[0].parameters["required"] == ["expression"]


def test_unknown_tool_is_reported_as_unknown_tool(ctx):
    result = call("no_such_tool", {}, ctx)

    assert (result.ok, result.error_code) == (False, "unknown_tool")
    assert result.content.startswith("error: unknown_tool:")


def test_tool_missing_from_the_allow_list_is_reported_as_unknown_tool(ctx):
    result = call("calculator", {"expression": "1+1"}, ctx, allowed=["current_time"])

    assert result.error_code == "unknown_tool"


def test_arguments_that_are_not_json_are_invalid_arguments(ctx):
    result = call("calculator", "{'expression': 1+1", ctx)

    assert result.error_code == "invalid_arguments"
    assert "not valid JSON" in result.content


def test_arguments_that_are_not_an_object_are_invalid_arguments(ctx):
    assert call("calculator", "[1, 2]", ctx).error_code == "invalid_arguments"


def test_schema_violation_names_the_problem(ctx):
    missing = call("calculator", {}, ctx)
    wrong_type = call("calculator", {"expression": 42}, ctx)

    assert missing.content == "error: invalid_arguments: 'expression' is a required property"
    assert wrong_type.error_code == "invalid_arguments"
    assert "expression: 42 is not of type 'string'" in wrong_type.content


class SlowTool(Tool):
    name = "test_slow"
    timeout = 0.2

    def run(self, args: dict, ctx: ToolContext) -> str:
        time.sleep(2)
        return "too late"


class CrashingTool(Tool):
    name = "test_crashing"

    def run(self, args: dict, ctx: ToolContext) -> None:
        raise KeyError("boom")


@pytest.fixture
def test_tools() -> Iterator[None]:
    registry.register(SlowTool())
    registry.register(CrashingTool())
    yield
    registry.unregister(SlowTool.name)
    registry.unregister(CrashingTool.name)


def test_a_tool_past_its_timeout_is_abandoned_with_tool_timeout(ctx, test_tools):
    started = time.monotonic()
    result = call("test_slow", {}, ctx)

    assert result.error_code == "tool_timeout"
    assert time.monotonic() - started < 1.0
    assert 150 <= result.duration_ms < 1000


def test_a_tool_raising_an_unexpected_exception_is_tool_crashed(ctx, test_tools):
    result = call("test_crashing", {}, ctx)

    assert result.error_code == "tool_crashed"
    assert result.content == "error: tool_crashed: KeyError: 'boom'"


def test_registering_a_second_tool_with_the_same_name_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        registry.register(registry.get("calculator"))
