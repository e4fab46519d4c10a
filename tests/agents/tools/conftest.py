"""Fixtures of the tool tests."""

import pytest

from agents.tools.base import ToolContext
from tests.agents.tools.calling import tool_context


@pytest.fixture
def ctx() -> ToolContext:
    """A fresh tool context for each test, with an empty session memory."""
    return tool_context()
