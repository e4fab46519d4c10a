"""One tool call, in the process the fork server has just forked for it.

The child cuts itself off from the server (new session, fds 0-2 on /dev/null, every inherited fd
closed but its own result pipe), applies the layers (rlimits, Landlock, seccomp), says on the
result pipe which layers hold, and only then imports and runs the package's code. It never
returns to the server's loop: every path ends in `os._exit`.
"""

from __future__ import annotations

import errno
import importlib
import io
import json
import operator
import os
import sys
import tempfile
from pathlib import Path
from typing import NoReturn

import layers
import protocol
import sdk

RESULT_FD = 3
# The fork server's own top-level modules; tools reach the SDK as `beamclaw_sdk`.
SERVER_MODULES = ("child", "layers", "protocol", "sdk", "server")
MESSAGE_CHARS = 1000
# What a refusal by a layer looks like from inside: the errno the call got.
REFUSAL_ERRNOS = {errno.EPERM, errno.EACCES, errno.EROFS, errno.EFBIG}
ToolError = sdk.ToolError  # bound here: a tool may rebind the SDK's name in its own process


class CapturedLog(io.TextIOBase):
    """sys.stdout and sys.stderr of the tool: the first `limit_bytes` bytes are kept."""

    def __init__(self, limit_bytes: int) -> None:
        self._parts: list[bytes] = []
        self._room = limit_bytes

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if self._room > 0:
            data = text[: self._room].encode("utf-8", "replace")[: self._room]
            self._parts.append(data)
            self._room -= len(data)
        return len(text)

    def text(self) -> str:
        return b"".join(self._parts).decode("utf-8", "ignore")


def run_call(
    *,
    request: dict,
    args_fd: int,
    result_fd: int,
    tmp: str,
    strict: bool,
    read_paths: list[str],
    python_paths: list[str],
) -> NoReturn:
    """Run one call; `strict` refuses to run the tool when any layer fails to apply."""
    code = 70
    try:
        code = _run(
            request=request,
            args_fd=args_fd,
            result_fd=result_fd,
            tmp=tmp,
            strict=strict,
            read_paths=read_paths,
            python_paths=python_paths,
        )
    finally:
        os._exit(code)


def _run(
    *,
    request: dict,
    args_fd: int,
    result_fd: int,
    tmp: str,
    strict: bool,
    read_paths: list[str],
    python_paths: list[str],
) -> int:
    limits = request["limits"]
    package_dir = request["package_dir"]
    raw_arguments = os.pread(args_fd, os.fstat(args_fd).st_size, 0)
    os.close(args_fd)

    os.setsid()
    layers.die_with_parent()
    if result_fd != RESULT_FD:
        os.dup2(result_fd, RESULT_FD)
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    # Closes the control socket, the server's other per-call pipes and the original result fd.
    os.closerange(RESULT_FD + 1, 2**31 - 1)

    os.chdir(tmp)
    tempfile.tempdir = tmp
    sdk._tmp_dir = Path(tmp)
    captured = CapturedLog(limits["log_bytes"])
    sys.stdout = sys.stderr = captured

    applied = ["fresh_process", "private_tmp"]
    missing = []
    steps = (
        (
            "rlimits",
            lambda: layers.apply_rlimits(
                cpu_s=limits["cpu_s"],
                memory_bytes=limits["memory_bytes"],
                file_size_bytes=limits["file_size_bytes"],
                open_files=limits["open_files"],
            ),
        ),
        (
            "landlock",
            lambda: layers.apply_landlock(read_paths=[*read_paths, package_dir], write_paths=[tmp]),
        ),
        ("seccomp", lambda: layers.apply_seccomp(own_pid=os.getpid())),
    )
    for name, apply in steps:
        try:
            detail = apply()
        except Exception as exc:
            if strict:
                _answer(
                    {
                        "ok": False,
                        "error_code": "sandbox_unavailable",
                        "message": f"the {name} layer could not be applied: {_describe(exc)}",
                    }
                )
                return 1
            missing.append(name)
            continue
        applied.append(name)
        if name == "landlock":
            applied.extend(detail)
    _answer({"layers": applied, "missing": missing})

    # From here on, package code runs: nothing below may trust the process's state.
    try:
        arguments = json.loads(raw_arguments)
        for name in SERVER_MODULES:  # a package may have modules of these names
            sys.modules.pop(name, None)
        sys.path[:] = [package_dir, *python_paths]
        importlib.invalidate_caches()
        module_name, _, function_name = request["entry_point"].partition(":")
        function = operator.attrgetter(function_name)(importlib.import_module(module_name))
        value = function(**arguments)
        encoded = json.dumps(value, ensure_ascii=False, allow_nan=False).encode()
    except MemoryError:
        return _fail(
            captured,
            "tool_memory",
            f"the tool ran out of memory (limit {limits['memory_bytes'] // 2**20} MiB)",
        )
    except ToolError as exc:
        return _fail(captured, "tool_error", _text(exc))
    except OSError as exc:
        refused = exc.errno in REFUSAL_ERRNOS
        return _fail(captured, "tool_refused" if refused else "tool_error", _describe(exc))
    except BaseException as exc:
        return _fail(captured, "tool_error", _describe(exc))
    if len(encoded) > limits["result_bytes"]:
        return _fail(
            captured,
            "tool_output_too_large",
            f"the result is {len(encoded)} bytes; the limit is {limits['result_bytes']}",
        )
    head = {"ok": True, "log": captured.text()}
    protocol.write_all(RESULT_FD, protocol.encode_frame(head, result=encoded))
    return 0


def _fail(captured: CapturedLog, code: str, message: str) -> int:
    _answer(
        {
            "ok": False,
            "error_code": code,
            "message": message,
            "log": captured.text(),
        }
    )
    return 0


def _answer(message: dict) -> None:
    protocol.write_all(RESULT_FD, protocol.encode_frame(message))


def _text(exc: BaseException) -> str:
    try:
        return str(exc)[:MESSAGE_CHARS]
    except Exception:
        return "(the exception's text could not be read)"


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {_text(exc)}"[:MESSAGE_CHARS]
