"""The sandbox runs package tool code out of process and answers with a clear outcome."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import sysconfig
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import marketplace.sandbox as sandbox_module
from marketplace.sandbox import SandboxLimits, SandboxServer, ToolOutcome
from marketplace.sandbox.host import REQUIRED_LAYERS
from tests.support import wait_until

from .conftest import FAST, write_package

ROOT = Path(__file__).resolve().parents[2]


def call_dirs(server: SandboxServer) -> list[Path]:
    """The per-call tmp dirs that exist right now, seen from the host."""
    return sorted(Path(f"/proc/{server.server_pid}/root/tmp").glob("call-*"))


def test_every_required_layer_works_on_this_host(sandbox):
    found = sandbox.probe()

    assert found["bwrap"].startswith("bubblewrap 0.11"), found
    assert found["landlock"] >= 1, found
    assert found["seccomp"].startswith("libseccomp"), found
    for layer in (*REQUIRED_LAYERS, "user_namespace", "empty_environment"):
        assert found[layer], (layer, found)


def test_arguments_go_in_and_the_json_result_comes_out(run_tool):
    outcome = run_tool(
        """
        from beamclaw_sdk import tool

        @tool
        def run(text, times):
            return {"echo": [text] * times, "nothing": None, "pi": 3.25}
        """,
        {"text": "héllo", "times": 2},
    )

    assert outcome.ok, outcome
    assert outcome.result == {"echo": ["héllo", "héllo"], "nothing": None, "pi": 3.25}
    assert outcome.error_code == ""
    assert 0 < outcome.duration_ms < 2000
    for layer in ("bwrap", "pid_namespace", "rlimits", "landlock", "seccomp", "supervisor"):
        assert layer in outcome.layers


def test_the_tool_sees_an_empty_environment_and_its_own_pid_namespace(sandbox, run_tool):
    outcome = run_tool(
        """
        import os

        def run():
            return {
                "environment": dict(os.environ),
                "pid": os.getpid(),
                "parent": os.getppid(),
                "pid_namespace": os.readlink("/proc/self/ns/pid"),
            }
        """
    )

    assert outcome.ok, outcome
    seen = outcome.result
    assert seen["environment"] == {}
    # Its parent is the fork server, which the host knows under another pid.
    assert seen["parent"] != sandbox.server_pid
    assert seen["pid_namespace"] == os.readlink(f"/proc/{sandbox.server_pid}/ns/pid")
    assert seen["pid_namespace"] != os.readlink("/proc/self/ns/pid")


def test_threads_share_two_malloc_arenas_so_many_fit_under_the_memory_limit(run_tool):
    outcome = run_tool(
        """
        import ctypes, os, threading

        def run():
            libc = ctypes.CDLL("libc.so.6")
            libc.fdopen.restype = ctypes.c_void_p
            libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
            release = threading.Event()

            def allocate():
                kept = [bytearray(1000) for _ in range(200)]
                release.wait()

            threads = [threading.Thread(target=allocate) for _ in range(6)]
            for thread in threads:
                thread.start()
            report = libc.fdopen(os.open("malloc.xml", os.O_WRONLY | os.O_CREAT), b"w")
            libc.malloc_info(0, report)
            libc.fflush(None)
            release.set()
            for thread in threads:
                thread.join()
            return open("malloc.xml").read().count("<heap nr=")
        """
    )

    assert outcome.result == 2, outcome  # glibc's default would give each thread its own


def test_a_call_holds_no_fd_but_dev_null_and_its_own_result_pipe(run_tool):
    outcome = run_tool(
        """
        import os, stat

        def run():
            fds = {}
            for fd in range(1024):
                try:
                    info = os.fstat(fd)
                except OSError:
                    continue
                fds[fd] = "pipe" if stat.S_ISFIFO(info.st_mode) else [
                    os.major(info.st_rdev), os.minor(info.st_rdev)]
            return fds
        """
    )

    assert outcome.ok, outcome
    assert outcome.result == {"0": [1, 3], "1": [1, 3], "2": [1, 3], "3": "pipe"}


def test_a_package_imports_its_own_modules_and_the_standard_library(sandbox, packages_dir):
    package = write_package(
        packages_dir,
        """
        import asyncio, sqlite3, threading
        from helpers import double

        def run(number):
            async def twice():
                await asyncio.sleep(0)
                return double(number)

            results = []
            worker = threading.Thread(target=lambda: results.append(double(number)))
            worker.start()
            worker.join()
            rows = sqlite3.connect(":memory:").execute("select 1 + 1").fetchall()
            return {"async": asyncio.run(twice()), "thread": results, "sqlite": rows}
        """,
        helpers="def double(n):\n    return 2 * n\n",
    )

    outcome = sandbox.run_tool(package, "tool:run", {"number": 21}, limits=FAST)

    assert outcome.ok, outcome
    assert outcome.result == {"async": 42, "thread": [42], "sqlite": [[2]]}


def test_a_package_module_may_share_a_name_with_the_sandboxs_own(sandbox, packages_dir):
    package = write_package(
        packages_dir,
        "import protocol, sdk\n\ndef run():\n    return [protocol.NAME, sdk.NAME]\n",
        protocol="NAME = 'package protocol'\n",
        sdk="NAME = 'package sdk'\n",
    )

    outcome = sandbox.run_tool(package, "tool:run", {}, limits=FAST)

    assert outcome.result == ["package protocol", "package sdk"], outcome


def test_the_hosts_installed_packages_cannot_be_imported(run_tool):
    site_packages = sysconfig.get_path("purelib", vars={"base": sys.base_prefix})
    assert (Path(site_packages) / "pip").is_dir()  # installed for the host's Python

    outcome = run_tool(
        """
        import os, sys

        def run(site_packages, venv):
            sys.path += [site_packages, venv]
            try:
                import pip
            except ImportError as exc:
                pip = type(exc).__name__
            try:
                import django
            except ImportError as exc:
                django = type(exc).__name__
            return {"pip": pip, "django": django, "listing": os.listdir(site_packages)}
        """,
        {"site_packages": site_packages, "venv": sysconfig.get_path("purelib")},
    )

    assert outcome.result == {
        "pip": "ModuleNotFoundError",
        "django": "ModuleNotFoundError",
        "listing": [],
    }, outcome


def test_what_the_tool_prints_is_the_calls_log(run_tool):
    outcome = run_tool(
        """
        import sys
        from beamclaw_sdk import log

        def run():
            print("to stdout")
            log("through the sdk", 1)
            sys.stderr.write("to stderr\\n")
            return "done"
        """
    )

    assert outcome.ok, outcome
    assert outcome.log == "to stdout\nthrough the sdk 1\nto stderr\n"


def test_a_tool_error_fails_the_call_with_its_message(run_tool):
    outcome = run_tool(
        """
        from beamclaw_sdk import ToolError

        def run():
            raise ToolError("the city is unknown")
        """
    )

    assert (outcome.ok, outcome.error_code, outcome.message) == (
        False,
        "tool_error",
        "the city is unknown",
    )


def test_an_exception_fails_the_call_with_its_type_and_truncated_text(run_tool):
    outcome = run_tool(
        """
        def run():
            raise KeyError("x" * 100_000)
        """
    )

    assert outcome.error_code == "tool_error"
    assert outcome.message.startswith("KeyError: 'xxx")
    assert len(outcome.message) <= 1000


def test_a_refusal_the_tool_does_not_catch_is_tool_refused(run_tool):
    outcome = run_tool(
        """
        import socket

        def run():
            socket.create_connection(("127.0.0.1", 6379))
        """
    )

    assert (outcome.error_code, outcome.message) == (
        "tool_refused",
        "PermissionError: [Errno 1] Operation not permitted",
    )


def test_a_result_that_is_not_json_is_a_tool_error(run_tool):
    outcome = run_tool("def run():\n    return {1, 2}\n")

    assert outcome.error_code == "tool_error"
    assert "not JSON serializable" in outcome.message


def test_a_tool_that_exits_without_a_result_crashed(run_tool):
    outcome = run_tool("import os\n\ndef run():\n    os._exit(3)\n")

    assert outcome.error_code == "tool_crashed"
    assert "code 3" in outcome.message


def test_a_tool_killed_by_a_signal_crashed(run_tool):
    outcome = run_tool(
        "import os, signal\n\ndef run():\n    os.kill(os.getpid(), signal.SIGSEGV)\n"
    )

    assert outcome.error_code == "tool_crashed"
    assert "SIGSEGV" in outcome.message


def test_the_calls_tmp_is_removed_after_the_call(sandbox, run_tool):
    outcome = run_tool(
        """
        import os

        def run():
            with open("note.txt", "w") as note:
                note.write("kept?")
            os.mkdir("locked")
            os.chmod("locked", 0)
            return os.getcwd()
        """
    )

    assert outcome.ok, outcome
    assert outcome.result.startswith("/tmp/call-")
    assert not Path(f"/proc/{sandbox.server_pid}/root{outcome.result}").exists()
    assert call_dirs(sandbox) == []


def test_callers_mistakes_raise(sandbox, packages_dir, tmp_path):
    package = write_package(packages_dir, "def run():\n    return 1\n")

    with pytest.raises(ValueError, match="not a package directory"):
        sandbox.run_tool(tmp_path, "tool:run", {})
    with pytest.raises(ValueError, match="not a package directory"):
        sandbox.run_tool(package / "..", "tool:run", {})
    with pytest.raises(ValueError, match="entry point"):
        sandbox.run_tool(package, "tool.run", {})
    with pytest.raises(ValueError, match="JSON object"):
        sandbox.run_tool(package, "tool:run", ["a"])  # type: ignore[arg-type]


def test_concurrent_calls_each_get_their_own_result(sandbox, packages_dir):
    package = write_package(
        packages_dir,
        """
        import time

        def run(caller):
            time.sleep(0.01 * (caller % 5))
            return {"caller": caller}
        """,
    )

    def call(caller: int) -> ToolOutcome:
        return sandbox.run_tool(package, "tool:run", {"caller": caller}, limits=FAST)

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(call, range(40)))

    assert [o.result for o in outcomes] == [{"caller": n} for n in range(40)]


def test_two_tenants_never_see_each_others_files_or_results(sandbox, packages_dir):
    """Each tenant's call writes a secret in its tmp, then tries to read the other's."""
    package = write_package(
        packages_dir,
        """
        import os, time

        def run(secret):
            with open("secret.txt", "w") as f:
                f.write(secret)
            while not os.path.exists("peer"):  # written by the test from the host
                time.sleep(0.01)
            peer = open("peer").read()
            seen = {"own": open("secret.txt").read(), "peer_exists": os.path.exists(peer)}
            for attempt, action in (
                ("read", lambda: open(os.path.join(peer, "secret.txt")).read()),
                ("list", lambda: os.listdir(peer)),
                ("list_tmp", lambda: os.listdir("/tmp")),
            ):
                try:
                    seen[attempt] = action()
                except OSError as exc:
                    seen[attempt] = type(exc).__name__
            open("done", "w").close()
            while not os.path.exists("finish"):  # both have tried while both were running
                time.sleep(0.01)
            return seen
        """,
    )
    limits = SandboxLimits(wall_timeout_s=10.0)
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {
            tenant: pool.submit(
                sandbox.run_tool, package, "tool:run", {"secret": tenant}, limits=limits
            )
            for tenant in ("tenant-a-secret", "tenant-b-secret")
        }
        dirs = wait_until(
            lambda: (
                (found := [d for d in call_dirs(sandbox) if (d / "secret.txt").exists()])
                and len(found) == 2
                and found
            ),
            timeout=10,
        )
        by_secret = {(d / "secret.txt").read_text(): d for d in dirs}
        inside = {secret: "/" + str(d).split("/root/", 1)[1] for secret, d in by_secret.items()}
        by_secret["tenant-a-secret"].joinpath("peer").write_text(inside["tenant-b-secret"])
        by_secret["tenant-b-secret"].joinpath("peer").write_text(inside["tenant-a-secret"])
        wait_until(lambda: all((d / "done").exists() for d in dirs), timeout=10)
        for d in dirs:
            (d / "finish").touch()
        outcomes = {tenant: future.result() for tenant, future in futures.items()}

    for tenant, outcome in outcomes.items():
        assert outcome.ok, outcome
        assert outcome.result == {
            "own": tenant,
            "peer_exists": True,
            "read": "PermissionError",
            "list": "PermissionError",
            "list_tmp": "PermissionError",
        }


def test_the_module_level_run_tool_uses_the_settings(packages_dir, settings, monkeypatch):
    settings.SANDBOX_PACKAGES_DIR = str(packages_dir)
    monkeypatch.setattr(sandbox_module, "_default", None)
    package = write_package(packages_dir, "def run(n):\n    return n + 1\n")
    try:
        outcome = sandbox_module.run_tool(package, "tool:run", {"n": 1})
        found = sandbox_module.probe()
    finally:
        sandbox_module.default_server().stop()

    assert outcome.ok and outcome.result == 2, outcome
    assert found["seccomp"] and found["landlock"]
    assert sandbox_module.default_server().packages_dir == packages_dir


def test_fail_closed_when_a_required_layer_is_missing(packages_dir, tmp_path):
    package = write_package(packages_dir, "def run():\n    return 'ran'\n")
    server = SandboxServer(packages_dir=packages_dir, bwrap=tmp_path / "no-bwrap-here")
    try:
        outcome = server.run_tool(package, "tool:run", {}, limits=FAST)
        found = server.probe()
    finally:
        server.stop()

    assert (outcome.ok, outcome.error_code) == (False, "sandbox_unavailable")
    assert "bwrap" in outcome.message
    assert found["bwrap"] is False
    assert found["landlock"] and found["seccomp"]  # the rest was probed all the same


def test_the_development_setting_runs_without_a_missing_layer_and_says_so(packages_dir, tmp_path):
    package = write_package(packages_dir, "def run():\n    return 'ran'\n")
    server = SandboxServer(
        packages_dir=packages_dir, bwrap=tmp_path / "no-bwrap-here", allow_missing_layers=True
    )
    try:
        outcome = server.run_tool(package, "tool:run", {}, limits=FAST)
    finally:
        server.stop()

    assert outcome.ok, outcome
    assert outcome.result == "ran"
    assert "bwrap" not in outcome.layers and "pid_namespace" not in outcome.layers
    assert {"landlock", "seccomp", "rlimits"} <= set(outcome.layers)


def test_a_server_dying_mid_call_fails_that_call_and_the_next_call_works(packages_dir):
    package = write_package(
        packages_dir,
        """
        import os, time

        def run():
            open("started", "w").close()
            while True:
                time.sleep(0.05)
        """,
    )
    server = SandboxServer(packages_dir=packages_dir)
    try:
        server.start()
        first_pid = server.server_pid
        outcomes: list[ToolOutcome] = []
        caller = threading.Thread(
            target=lambda: outcomes.append(server.run_tool(package, "tool:run", {}, limits=FAST))
        )
        caller.start()
        wait_until(lambda: any((d / "started").exists() for d in call_dirs(server)), timeout=10)
        os.kill(first_pid, signal.SIGKILL)
        caller.join(timeout=10)
        after = server.run_tool(
            write_package(packages_dir, "def run():\n    return 'again'\n"), "tool:run", {}
        )
    finally:
        server.stop()

    assert outcomes[0].error_code == "sandbox_unavailable", outcomes[0]
    assert "stopped" in outcomes[0].message
    assert after.ok and after.result == "again", after
    assert server.server_pid != first_pid


def test_a_server_that_dies_idle_is_restarted_before_the_next_call(packages_dir):
    server = SandboxServer(packages_dir=packages_dir, restart_backoff_s=0)
    try:
        server.start()
        first_pid = server.server_pid
        os.kill(first_pid, signal.SIGKILL)
        second_pid = wait_until(
            lambda: server.server_pid not in (None, first_pid) and server.server_pid
        )
        assert Path(f"/proc/{second_pid}").exists()
        outcome = server.run_tool(
            write_package(packages_dir, "def run():\n    return 'served'\n"), "tool:run", {}
        )
    finally:
        server.stop()

    assert outcome.ok and outcome.result == "served", outcome
    assert server.server_pid is None  # stopped on purpose: not restarted


def test_the_server_dies_with_the_process_that_started_it(packages_dir):
    script = textwrap.dedent(
        f"""
        import os, sys
        from pathlib import Path
        sys.path.insert(0, {str(ROOT)!r})
        from marketplace.sandbox import SandboxServer

        server = SandboxServer(packages_dir=Path({str(packages_dir)!r}))
        server.start()
        print(server.server_pid, flush=True)
        os._exit(0)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    server_pid = int(done.stdout.split()[0])

    wait_until(lambda: not Path(f"/proc/{server_pid}").exists(), timeout=10)
