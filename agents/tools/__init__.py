"""Agent tools. `from agents.tools import registry` gives the registry with the built-ins.

Adding a tool: write its class (in builtin.py or its own module) and register it here.
"""

from . import registry
from .builtin import Calculator, CurrentTime, HttpFetch, SessionMemoryTool
from .subagents import SpawnAgent

registry.register(CurrentTime())
registry.register(Calculator())
registry.register(HttpFetch())
registry.register(SessionMemoryTool())
registry.register(SpawnAgent())

__all__ = ["registry"]
