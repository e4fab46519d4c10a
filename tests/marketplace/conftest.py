"""Fixtures for the sandbox tests: a warm fork server and tiny tool packages in tmp dirs."""

from __future__ import annotations

import itertools
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from marketplace.sandbox import SandboxLimits, SandboxServer, ToolOutcome

# Low caps keep the suite fast; each limit a test is about is set by that test.
FAST = SandboxLimits(wall_timeout_s=2.0)

_names = itertools.count()


def write_package(packages_dir: Path, source: str, **modules: str) -> Path:
    """A package directory holding `tool.py` (and any further modules), ready to run."""
    package = packages_dir / f"package-{next(_names)}"
    package.mkdir()
    (package / "tool.py").write_text(textwrap.dedent(source))
    for name, text in modules.items():
        (package / f"{name}.py").write_text(textwrap.dedent(text))
    return package


@pytest.fixture(scope="module")
def packages_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("packages")


@pytest.fixture(scope="module")
def sandbox(packages_dir: Path) -> Iterator[SandboxServer]:
    server = SandboxServer(packages_dir=packages_dir)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def run_tool(sandbox: SandboxServer, packages_dir: Path) -> Callable[..., ToolOutcome]:
    """run_tool(source, arguments, limits=FAST): write a package and run its `tool:run`."""

    def run(
        source: str, arguments: dict | None = None, *, limits: SandboxLimits = FAST
    ) -> ToolOutcome:
        package = write_package(packages_dir, source)
        return sandbox.run_tool(package, "tool:run", arguments or {}, limits=limits)

    return run
