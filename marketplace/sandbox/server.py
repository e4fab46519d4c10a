"""The warm fork server: runs inside the sandbox and forks one locked-down child per tool call.

Started by `host.SandboxServer` as `python -I -S -B server.py <control fd> <config json>` with an
empty environment, inside bubblewrap when it is available. It pre-imports the standard library
modules tools are likely to use and the tool SDK, tests on a throw-away child which layers
actually hold, says hello on the control socket, then serves calls until the host goes away.

A call arrives on the control socket as a small JSON header with three fds: a memfd holding the
arguments, the write end of the call's result pipe (handed to the child only) and the write end
of its status pipe (the server's report: how the child ended). The server never reads or writes
its own stdin/stdout, and the child keeps no fd but its own result pipe, so no call can reach
another call's answer.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import socket
import stat
import struct
import sys
import tempfile
import time
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # -I leaves the script's directory off sys.path

import child  # noqa: E402
import layers  # noqa: E402
import protocol  # noqa: E402
import sdk  # noqa: E402

# Imported once here so a call pays nothing for them (a fresh import of asyncio, ssl, sqlite3
# and xml costs ~60 ms per call). A module this Python lacks is left out.
PRELOADED_MODULES = (
    "abc",
    "argparse",
    "array",
    "ast",
    "asyncio",
    "base64",
    "binascii",
    "bisect",
    "calendar",
    "cmath",
    "codecs",
    "collections",
    "collections.abc",
    "colorsys",
    "concurrent.futures",
    "contextlib",
    "copy",
    "csv",
    "dataclasses",
    "datetime",
    "decimal",
    "difflib",
    "email",
    "email.message",
    "email.parser",
    "email.utils",
    "enum",
    "fnmatch",
    "fractions",
    "functools",
    "glob",
    "gzip",
    "hashlib",
    "heapq",
    "hmac",
    "html",
    "html.parser",
    "http",
    "http.client",
    "io",
    "ipaddress",
    "itertools",
    "json",
    "logging",
    "math",
    "mimetypes",
    "numbers",
    "operator",
    "pathlib",
    "pprint",
    "queue",
    "random",
    "re",
    "secrets",
    "shlex",
    "shutil",
    "sqlite3",
    "ssl",
    "statistics",
    "string",
    "struct",
    "tempfile",
    "textwrap",
    "threading",
    "time",
    "traceback",
    "types",
    "typing",
    "unicodedata",
    "urllib",
    "urllib.error",
    "urllib.parse",
    "urllib.request",
    "uuid",
    "warnings",
    "xml",
    "xml.dom.minidom",
    "xml.etree.ElementTree",
    "xml.sax",
    "zipfile",
    "zlib",
    "zoneinfo",
)
TMP_ROOT = "/tmp"
STATUS_MAX_BYTES = 4096


@dataclass
class Call:
    pid: int
    pidfd: int
    status_fd: int
    tmp: str
    deadline: float
    timed_out: bool = False


@dataclass
class Server:
    control: socket.socket
    strict: bool
    read_paths: list[str]
    python_paths: list[str]
    calls: dict[int, Call] = field(default_factory=dict)  # by pidfd
    poller: select.poll = field(default_factory=select.poll)

    def serve(self) -> None:
        self.poller.register(self.control, select.POLLIN)
        while True:
            for fd, _ in self.poller.poll(self._timeout_ms()):
                if fd == self.control.fileno():
                    if not self._accept():
                        return  # the host went away: bubblewrap ends every child with us
                else:
                    self.poller.unregister(fd)
                    self._finish(self.calls.pop(fd))
            now = time.monotonic()
            for call in self.calls.values():
                if not call.timed_out and now >= call.deadline:
                    call.timed_out = True
                    _kill_group(call.pid)

    def _timeout_ms(self) -> int | None:
        waiting = [c.deadline for c in self.calls.values() if not c.timed_out]
        if not waiting:
            return None
        return max(0, int((min(waiting) - time.monotonic()) * 1000) + 1)

    def _accept(self) -> bool:
        try:
            header, fds, flags, _ = socket.recv_fds(self.control, 65536, 3)
        except OSError:
            return False
        if not header:
            return False
        if len(fds) != 3 or flags & socket.MSG_CTRUNC:
            for fd in fds:
                os.close(fd)
            return True
        args_fd, result_fd, status_fd = fds
        try:
            request = json.loads(header)
            deadline = time.monotonic() + float(request["limits"]["wall_timeout_s"])
            tmp = tempfile.mkdtemp(prefix="call-", dir=TMP_ROOT)
            pid = os.fork()
        except Exception as exc:
            os.close(args_fd)
            os.close(result_fd)
            _report(status_fd, {"error": f"{type(exc).__name__}: {exc}"})
            return True
        if pid == 0:
            child.run_call(
                request=request,
                args_fd=args_fd,
                result_fd=result_fd,
                tmp=tmp,
                strict=self.strict,
                read_paths=self.read_paths,
                python_paths=self.python_paths,
            )
        os.close(args_fd)
        os.close(result_fd)
        pidfd = os.pidfd_open(pid)
        self.calls[pidfd] = Call(pid, pidfd, status_fd, tmp, deadline)
        self.poller.register(pidfd, select.POLLIN)
        return True

    def _finish(self, call: Call) -> None:
        # The child is a zombie now, so its pid (and group id) cannot be reused before wait4:
        # killing the group here cannot hit another call.
        _kill_group(call.pid)
        _, status, usage = os.wait4(call.pid, 0)
        os.close(call.pidfd)
        _remove_tree(call.tmp)
        _report(
            call.status_fd,
            {
                "exit_code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
                "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
                "timed_out": call.timed_out,
                "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
                "max_rss_kb": usage.ru_maxrss,
                "tmp_removed": not os.path.lexists(call.tmp),
            },
        )


def _kill_group(pid: int) -> None:
    # The group is the child's own (it called setsid); the pid itself covers the instant
    # before it did.
    for kill in (os.killpg, os.kill):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            kill(pid, signal.SIGKILL)


def _report(fd: int, message: dict) -> None:
    try:
        protocol.write_all(fd, json.dumps(message).encode()[:STATUS_MAX_BYTES])
    except OSError:
        pass  # the host stopped waiting for this call
    finally:
        os.close(fd)


def _remove_tree(path: str) -> None:
    """Remove a call's tmp, even where the tool took its own permissions away."""
    with contextlib.suppress(OSError):
        os.chmod(path, stat.S_IRWXU)
    for root, dirs, _ in os.walk(path):
        for name in dirs:
            with contextlib.suppress(OSError):
                os.chmod(os.path.join(root, name), stat.S_IRWXU, follow_symlinks=False)
    shutil.rmtree(path, ignore_errors=True)


# --- start-up -----------------------------------------------------------------------------


def preload() -> list[str]:
    loaded = []
    for name in PRELOADED_MODULES:
        try:
            __import__(name)
        except ImportError:
            continue
        loaded.append(name)
    sys.modules["beamclaw_sdk"] = sdk
    layers.seccomp_library()  # loaded once here, not by every call
    return loaded


def self_test(read_paths: list[str]) -> dict:
    """Which layers hold, as seen by a throw-away child that applies each and then tries them."""
    tmp = tempfile.mkdtemp(prefix="probe-", dir=TMP_ROOT)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 70
        try:
            os.close(read_end)
            os.write(write_end, json.dumps(_test_layers(read_paths, tmp)).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as answer:
        data = answer.read()
    os.waitpid(pid, 0)
    _remove_tree(tmp)
    try:
        return json.loads(data)
    except ValueError:
        return {"rlimits": False, "landlock": False, "seccomp": False}


def _test_layers(read_paths: list[str], tmp: str) -> dict:
    found: dict = {}
    try:
        layers.apply_rlimits(cpu_s=5, memory_bytes=2**30, file_size_bytes=2**20, open_files=64)
        import resource

        found["rlimits"] = resource.getrlimit(resource.RLIMIT_FSIZE) == (2**20, 2**20)
    except Exception as exc:
        found["rlimits"] = False
        found["rlimits_error"] = str(exc)
    try:
        enforced = layers.apply_landlock(read_paths=read_paths, write_paths=[tmp])
        try:
            os.close(os.open(os.path.join(HERE, "server.py"), os.O_RDONLY))
            found["landlock"] = False
            found["landlock_error"] = "a file outside the allowed paths could be read"
        except PermissionError:
            found["landlock"] = layers.landlock_abi()
            found["landlock_rules"] = enforced
    except Exception as exc:
        found["landlock"] = False
        found["landlock_error"] = str(exc)
    try:
        layers.apply_seccomp(own_pid=os.getpid())
        try:
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).close()
            found["seccomp"] = False
            found["seccomp_error"] = "socket() was allowed"
        except PermissionError:
            found["seccomp"] = layers.seccomp_library().version()
    except Exception as exc:
        found["seccomp"] = False
        found["seccomp_error"] = str(exc)
    return found


def _send_credentials(control: socket.socket, hello: dict) -> None:
    # SCM_CREDENTIALS carries this process's pid; the kernel translates it into the host's pid
    # namespace, which tells the host which process is the server.
    credentials = struct.pack("3i", os.getpid(), os.getuid(), os.getgid())
    control.sendmsg(
        [json.dumps(hello).encode()],
        [(socket.SOL_SOCKET, socket.SCM_CREDENTIALS, credentials)],
    )


def main() -> None:
    layers.limit_malloc_arenas()
    control = socket.socket(fileno=int(sys.argv[1]))
    config = json.loads(sys.argv[2])
    loaded = preload()
    os.environ.clear()  # empty already; what Python itself sets (LC_CTYPE) goes too
    python_paths = [path for path in sys.path if path != HERE]
    read_paths = config["read_paths"]
    found = self_test(read_paths)
    found["empty_environment"] = not os.environ
    found["preloaded_modules"] = len(loaded)
    _send_credentials(control, {"probe": found})
    Server(
        control=control,
        strict=config["strict"],
        read_paths=read_paths,
        python_paths=python_paths,
    ).serve()


if __name__ == "__main__":
    main()
