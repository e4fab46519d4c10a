"""One test per attack on the escape list: each is refused, and the test names by what.

A tool reports what each attempt got, as "ExceptionType:ERRNO" or "allowed:<value>", so a test
asserts the specific refusal (EPERM from seccomp, EACCES from Landlock, ...) and not merely that
something failed.
"""

from __future__ import annotations

import hashlib
import os
import platform
import socket
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from marketplace.sandbox import SandboxLimits, SandboxServer
from marketplace.sandbox.host import CODE_DIR
from tests.support import wait_until

from .conftest import FAST, write_package

MiB = 2**20
POSTGRES_SOCKET = "/var/run/postgresql/.s.PGSQL.5432"

# Prepended to every attacking tool: run one attempt, say how it ended.
ATTEMPT = """
import errno as _errno

def attempt(action):
    try:
        value = action()
    except OSError as exc:
        return f"{type(exc).__name__}:{_errno.errorcode.get(exc.errno, exc.errno)}"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"[:200]
    return f"allowed:{value!r}"[:200]
"""


def with_attempt(source: str) -> str:
    return ATTEMPT + textwrap.dedent(source)


@pytest.fixture
def attack(run_tool):
    def run(source: str, arguments: dict | None = None, *, limits: SandboxLimits = FAST):
        return run_tool(with_attempt(source), arguments, limits=limits)

    return run


def attempts_of(outcome) -> dict:
    assert outcome.ok, outcome
    return outcome.result


def call_dirs(server: SandboxServer) -> list[Path]:
    return sorted(Path(f"/proc/{server.server_pid}/root/tmp").glob("call-*"))


def namespace_members(pid: int) -> set[int]:
    """The host pids of every process in the pid namespace of `pid`."""
    namespace = os.readlink(f"/proc/{pid}/ns/pid")
    members = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "ns/pid") == namespace:
                    members.add(int(entry.name))
            except OSError:
                continue
    return members


# --- secrets ----------------------------------------------------------------------------


def test_a_host_file_holding_secrets_cannot_be_read(attack, packages_dir, tmp_path_factory):
    beside_the_package = packages_dir / "secret.txt"
    beside_the_package.write_text("host-secret")
    elsewhere = tmp_path_factory.mktemp("secrets") / "secret.txt"
    elsewhere.write_text("host-secret")

    seen = attempts_of(
        attack(
            """
            import os

            def run(beside, elsewhere):
                return {
                    "beside": attempt(lambda: open(beside).read()),
                    "relative": attempt(
                        lambda: open(os.path.dirname(__file__) + "/../secret.txt").read()
                    ),
                    "elsewhere": attempt(lambda: open(elsewhere).read()),
                }
            """,
            {"beside": str(beside_the_package), "elsewhere": str(elsewhere)},
        )
    )

    # Mounted (the packages directory is) but not this package's: Landlock says no.
    assert seen["beside"] == "PermissionError:EACCES"
    assert seen["relative"] == "PermissionError:EACCES"
    # Not mounted at all.
    assert seen["elsewhere"] == "FileNotFoundError:ENOENT"


def test_etc_passwd_is_not_the_hosts(attack):
    seen = attempts_of(
        attack('def run():\n    return attempt(lambda: open("/etc/passwd").read())\n')
    )

    assert seen == "FileNotFoundError:ENOENT"
    assert "root:x:0:0" in Path("/etc/passwd").read_text()  # the host's has it


def test_no_secret_is_in_the_environment(packages_dir, monkeypatch):
    monkeypatch.setenv("BEAMCLAW_TEST_SECRET", "env-secret-4711")
    server = SandboxServer(packages_dir=packages_dir)  # started after the secret was set
    package = write_package(
        packages_dir,
        with_attempt(
            """
        import os

        def run():
            return {
                "environ": dict(os.environ),
                "getenv": os.getenv("BEAMCLAW_TEST_SECRET"),
                "proc_self": attempt(lambda: open("/proc/self/environ", "rb").read()),
            }
        """
        ),
    )
    try:
        outcome = server.run_tool(package, "tool:run", {}, limits=FAST)
    finally:
        server.stop()

    seen = attempts_of(outcome)
    assert seen == {"environ": {}, "getenv": None, "proc_self": "PermissionError:EACCES"}
    assert "env-secret-4711" not in repr(outcome)


def test_proc_environ_of_other_processes_cannot_be_scanned(attack):
    seen = attempts_of(
        attack(
            """
            import os

            def run():
                return {
                    "list_proc": attempt(lambda: os.listdir("/proc")),
                    "init": attempt(lambda: open("/proc/1/environ", "rb").read()),
                    "parent": attempt(lambda: open(f"/proc/{os.getppid()}/environ", "rb").read()),
                }
            """
        )
    )

    assert seen == {
        "list_proc": "PermissionError:EACCES",
        "init": "PermissionError:EACCES",
        "parent": "PermissionError:EACCES",
    }


def test_the_parents_memory_cannot_be_read(attack):
    seen = attempts_of(
        attack(
            """
            import ctypes, os

            def run():
                libc = ctypes.CDLL("libc.so.6", use_errno=True)
                buffer = ctypes.create_string_buffer(8)

                def vm_read():
                    local = (ctypes.c_void_p * 2)(ctypes.addressof(buffer), 8)
                    remote = (ctypes.c_void_p * 2)(0x400000, 8)
                    if libc.process_vm_readv(os.getppid(), local, 1, remote, 1, 0) < 0:
                        raise OSError(ctypes.get_errno(), "process_vm_readv")

                def trace():
                    if libc.ptrace(16, os.getppid(), 0, 0) < 0:  # PTRACE_ATTACH
                        raise OSError(ctypes.get_errno(), "ptrace")

                return {
                    "mem": attempt(lambda: open(f"/proc/{os.getppid()}/mem", "rb").read(1)),
                    "process_vm_readv": attempt(vm_read),
                    "ptrace": attempt(trace),
                }
            """
        )
    )

    assert seen == {
        "mem": "PermissionError:EACCES",
        "process_vm_readv": "PermissionError:EPERM",
        "ptrace": "PermissionError:EPERM",
    }


# --- network ----------------------------------------------------------------------------


def test_tcp_to_the_local_redis_is_refused(attack):
    socket.create_connection(("127.0.0.1", 6379), timeout=2).close()  # it is there for the host

    seen = attempts_of(
        attack(
            """
            import socket

            def run():
                return attempt(lambda: socket.create_connection(("127.0.0.1", 6379), timeout=1))
            """
        )
    )

    assert seen == "PermissionError:EPERM"


def test_tcp_to_an_outside_address_is_refused(attack):
    seen = attempts_of(
        attack(
            """
            import socket

            def run():
                return {
                    "ipv4": attempt(lambda: socket.create_connection(("1.1.1.1", 443), timeout=1)),
                    "ipv6": attempt(
                        lambda: socket.socket(socket.AF_INET6).connect(("2606:4700::1111", 443))
                    ),
                    "dns": attempt(lambda: socket.getaddrinfo("example.com", 443)),
                }
            """
        )
    )

    assert seen["ipv4"] == "PermissionError:EPERM"
    assert seen["ipv6"] == "PermissionError:EPERM"
    assert not seen["dns"].startswith("allowed")


def test_udp_send_is_refused(attack):
    seen = attempts_of(
        attack(
            """
            import socket

            def run():
                def send():
                    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    return udp.sendto(b"leak", ("127.0.0.1", 53))

                return {
                    "udp": attempt(send),
                    "raw": attempt(lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW)),
                    "inet_pair": attempt(lambda: socket.socketpair(socket.AF_INET)),
                }
            """
        )
    )

    assert seen == {
        "udp": "PermissionError:EPERM",
        "raw": "PermissionError:EPERM",
        "inet_pair": "PermissionError:EPERM",
    }


def test_the_unix_socket_of_postgresql_is_refused(attack):
    assert Path(POSTGRES_SOCKET).is_socket()  # it is there for the host

    seen = attempts_of(
        attack(
            """
            import socket

            def run(path):
                def connect():
                    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    unix.connect(path)

                return {
                    "connect": attempt(connect),
                    "abstract": attempt(lambda: socket.socket(socket.AF_UNIX).connect("\\0x")),
                }
            """,
            {"path": POSTGRES_SOCKET},
        )
    )

    assert seen == {"connect": "PermissionError:EPERM", "abstract": "PermissionError:EPERM"}


# --- files and code -----------------------------------------------------------------------


def test_nothing_outside_the_calls_tmp_can_be_written(attack):
    seen = attempts_of(
        attack(
            """
            import os

            def run():
                here = os.path.dirname(__file__)
                return {
                    "own_tmp": attempt(lambda: open("inside.txt", "w").write("ok")),
                    "tmp_root": attempt(lambda: open("/tmp/outside.txt", "w")),
                    "parent_of_tmp": attempt(lambda: open("../outside.txt", "w")),
                    "package": attempt(lambda: open(os.path.join(here, "tool.py"), "a")),
                    "new_in_package": attempt(lambda: open(os.path.join(here, "x.py"), "w")),
                    "usr": attempt(lambda: open("/usr/evil", "w")),
                    "dev_shm": attempt(lambda: open("/dev/shm/evil", "w")),
                }
            """
        )
    )

    assert seen["own_tmp"] == "allowed:2"
    for where in ("tmp_root", "parent_of_tmp", "dev_shm"):
        assert seen[where] == "PermissionError:EACCES", where
    # Read-only mounts refuse before Landlock is asked.
    for where in ("package", "new_in_package", "usr"):
        assert seen[where] == "OSError:EROFS", where


def test_the_sandbox_code_cannot_be_tampered_with(sandbox, run_tool):
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in CODE_DIR.glob("*.py")}

    tamper = run_tool(
        with_attempt(
            """
        import os, beamclaw_sdk

        def run():
            beamclaw_sdk.ToolError = None  # in this call's memory only
            server_file = os.path.join(os.path.dirname(beamclaw_sdk.__file__), "server.py")
            return {
                "sdk_file": attempt(lambda: open(beamclaw_sdk.__file__, "a")),
                "server_file": attempt(lambda: open(server_file, "a")),
                "new_file": attempt(lambda: open(beamclaw_sdk.__file__ + ".evil", "w")),
            }
        """
        )
    )
    after = run_tool(
        "import beamclaw_sdk\n\ndef run():\n    return beamclaw_sdk.ToolError.__name__\n"
    )

    seen = attempts_of(tamper)
    assert seen == {
        "sdk_file": "OSError:EROFS",
        "server_file": "OSError:EROFS",
        "new_file": "OSError:EROFS",
    }
    assert after.result == "ToolError"
    assert before == {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in CODE_DIR.glob("*.py")
    }


def test_another_calls_tmp_cannot_be_read(sandbox, packages_dir):
    holder = write_package(
        packages_dir,
        """
        import os, time

        def run():
            with open("private.txt", "w") as f:
                f.write("holder-secret")
            while not os.path.exists("release"):  # created by the test from the host
                time.sleep(0.01)
            return "released"
        """,
    )
    reader = write_package(
        packages_dir,
        with_attempt(
            """
        import os

        def run(path):
            return {
                "read": attempt(lambda: open(os.path.join(path, "private.txt")).read()),
                "list": attempt(lambda: os.listdir(path)),
                "write": attempt(lambda: open(os.path.join(path, "planted"), "w")),
            }
        """
        ),
    )
    limits = SandboxLimits(wall_timeout_s=10)
    with ThreadPoolExecutor(max_workers=1) as pool:
        held = pool.submit(sandbox.run_tool, holder, "tool:run", {}, limits=limits)
        (held_dir,) = wait_until(
            lambda: [d for d in call_dirs(sandbox) if (d / "private.txt").exists()], timeout=10
        )
        inside = "/" + str(held_dir).split("/root/", 1)[1]
        read = sandbox.run_tool(reader, "tool:run", {"path": inside}, limits=FAST)
        (held_dir / "release").touch()
        assert held.result().result == "released"

    assert attempts_of(read) == {
        "read": "PermissionError:EACCES",
        "list": "PermissionError:EACCES",
        "write": "PermissionError:EACCES",
    }


# --- processes ------------------------------------------------------------------------------


def test_no_program_can_be_run(attack):
    seen = attempts_of(
        attack(
            """
            import os, subprocess

            def run():
                return {
                    "subprocess": attempt(lambda: subprocess.run(["/usr/bin/id"])),
                    "execv": attempt(lambda: os.execv("/usr/bin/id", ["id"])),
                    "posix_spawn": attempt(lambda: os.posix_spawn("/usr/bin/id", ["id"], {})),
                    "system": attempt(lambda: os.system("id")),
                }
            """
        )
    )

    assert seen["subprocess"] == "PermissionError:EPERM"
    assert seen["execv"] == "PermissionError:EPERM"
    assert seen["posix_spawn"] == "PermissionError:EPERM"
    assert seen["system"] == "allowed:32512"  # exit status 127: the shell never started


def test_the_parent_cannot_be_signalled(sandbox, attack):
    server_pid = sandbox.server_pid

    seen = attempts_of(
        attack(
            """
            import os, signal

            def run():
                return {
                    "parent": attempt(lambda: os.kill(os.getppid(), signal.SIGKILL)),
                    "init": attempt(lambda: os.kill(1, signal.SIGKILL)),
                    "everyone": attempt(lambda: os.kill(-1, signal.SIGKILL)),
                    "self": attempt(lambda: os.kill(os.getpid(), 0)),
                }
            """
        )
    )
    again = attack("def run():\n    return 'still serving'\n")

    assert seen == {
        "parent": "PermissionError:EPERM",
        "init": "PermissionError:EPERM",
        "everyone": "PermissionError:EPERM",
        "self": "allowed:None",
    }
    assert again.result == "still serving"
    assert sandbox.server_pid == server_pid


def test_the_parent_cannot_be_signalled_through_an_fds_owner(sandbox, attack):
    """F_SETOWN + F_SETSIG would have the kernel send SIGKILL to the server on I/O."""
    server_pid = sandbox.server_pid

    seen = attempts_of(
        attack(
            """
            import fcntl, os, signal

            F_SETSIG = 10

            def run():
                read_end, write_end = os.pipe()
                return {
                    "setown": attempt(lambda: fcntl.fcntl(read_end, fcntl.F_SETOWN, os.getppid())),
                    "setsig": attempt(lambda: fcntl.fcntl(read_end, F_SETSIG, signal.SIGKILL)),
                    "async": attempt(lambda: fcntl.fcntl(read_end, fcntl.F_SETFL, os.O_ASYNC)),
                    "write": attempt(lambda: os.write(write_end, b"x")),
                }
            """
        )
    )
    again = attack("def run():\n    return 'still serving'\n")

    assert seen["setown"] == "PermissionError:EPERM"
    assert again.result == "still serving"
    assert sandbox.server_pid == server_pid


def test_no_user_namespace_can_be_created(attack):
    seen = attempts_of(
        attack(
            """
            import ctypes

            CLONE_NEWUSER, CLONE_NEWNET = 0x10000000, 0x40000000

            def run():
                libc = ctypes.CDLL("libc.so.6", use_errno=True)

                def unshare(flags):
                    if libc.unshare(flags) != 0:
                        raise OSError(ctypes.get_errno(), "unshare")

                return {
                    "user": attempt(lambda: unshare(CLONE_NEWUSER)),
                    "net": attempt(lambda: unshare(CLONE_NEWNET)),
                }
            """
        )
    )

    assert seen == {"user": "PermissionError:EPERM", "net": "PermissionError:EPERM"}


def test_no_daemon_outlives_the_call(sandbox, attack):
    members_before = namespace_members(sandbox.server_pid)

    seen = attempts_of(
        attack(
            """
            import os, threading, time

            def run():
                threading.Thread(target=lambda: time.sleep(3600), daemon=False).start()
                return {
                    "fork": attempt(os.fork),
                    "double_fork": attempt(lambda: os.fork() or os.fork()),
                    "spawn": attempt(lambda: os.posix_spawn("/usr/bin/sleep", ["sleep", "99"], {})),
                }
            """
        )
    )

    assert seen == {
        "fork": "PermissionError:EPERM",
        "double_fork": "PermissionError:EPERM",
        "spawn": "PermissionError:EPERM",
    }
    # The thread it left behind died with the call: only bubblewrap's init and the server remain.
    assert namespace_members(sandbox.server_pid) == members_before
    assert len(members_before) == 2


def test_the_result_channel_cannot_be_forged(sandbox, packages_dir):
    forger = write_package(
        packages_dir,
        """
        import json, os, struct

        def run():
            forged = json.dumps({"ok": True, "result": {"caller": "FORGED"}}).encode()
            frame = struct.pack(">I", len(forged)) + forged
            for fd in range(1024):
                try:
                    os.write(fd, frame * 100)
                except OSError:
                    pass
            return {"caller": "forger"}
        """,
    )
    honest = write_package(packages_dir, "def run(caller):\n    return {'caller': caller}\n")

    def call(n: int):
        if n % 3 == 0:
            return sandbox.run_tool(forger, "tool:run", {}, limits=FAST)
        return sandbox.run_tool(honest, "tool:run", {"caller": n}, limits=FAST)

    with ThreadPoolExecutor(max_workers=6) as pool:
        outcomes = list(pool.map(call, range(30)))

    for n, outcome in enumerate(outcomes):
        if n % 3 == 0:
            # It could only write into its own result pipe, which it corrupted.
            assert outcome.error_code == "tool_crashed", outcome
            assert outcome.message == "the tool corrupted its result channel"
        else:
            assert outcome.ok and outcome.result == {"caller": n}, outcome


def test_python_level_tricks_reach_none_of_it(attack, packages_dir):
    secret = packages_dir / "trick-secret.txt"
    secret.write_text("host-secret")

    seen = attempts_of(
        attack(
            """
            def run(secret):
                classes, todo = {}, [().__class__.__base__]
                while todo:  # every class, from object down
                    for subclass in type.__subclasses__(todo.pop()):
                        if subclass.__name__ not in classes:
                            classes[subclass.__name__] = subclass
                            todo.append(subclass)
                wrap_close = classes["_wrap_close"].__init__.__globals__  # the os module
                return {
                    "system": attempt(lambda: wrap_close["system"]("id")),
                    "fork": attempt(lambda: wrap_close["fork"]()),
                    "popen": attempt(lambda: classes["Popen"](["/usr/bin/id"])),
                    "socket": attempt(lambda: classes["socket"]()),
                    "file": attempt(lambda: classes["FileIO"](secret).read()),
                    "environ": attempt(lambda: dict(wrap_close["environ"])),
                }
            """,
            {"secret": str(secret)},
        )
    )

    assert seen["system"] == "allowed:32512"  # exit status 127: the shell never started
    assert seen["fork"] == "PermissionError:EPERM"
    assert seen["popen"] == "PermissionError:EPERM"
    assert seen["socket"] == "PermissionError:EPERM"
    assert seen["file"] == "PermissionError:EACCES"
    assert seen["environ"] == "allowed:{}"


@pytest.mark.skipif(platform.machine() != "x86_64", reason="x86-64 machine code")
def test_the_deny_list_cannot_be_bypassed_through_another_syscall_abi(attack):
    """socket() by its x32 number, and by its i386 number through int 0x80: killed (SIGSYS)."""
    x32 = attack(
        """
        import ctypes

        def run():
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            return libc.syscall(0x40000000 | 41, 2, 1, 0)  # x32 socket(AF_INET, SOCK_STREAM)
        """
    )
    i386 = attack(
        """
        import ctypes, mmap

        def run():
            # mov eax, 359 (i386 socket); mov ebx, 2; mov ecx, 1; xor edx, edx; int 0x80; ret
            code = b"\\xb8" + (359).to_bytes(4, "little")
            code += b"\\xbb\\x02\\0\\0\\0\\xb9\\x01\\0\\0\\0\\x31\\xd2\\xcd\\x80\\xc3"
            page = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
            page.write(code)
            address = ctypes.addressof(ctypes.c_char.from_buffer(page))
            return ctypes.CFUNCTYPE(ctypes.c_int)(address)()
        """
    )

    for outcome in (x32, i386):
        assert outcome.error_code == "tool_refused", outcome
        assert outcome.message == "a sandbox layer stopped the tool (SIGSYS)"


# --- resources ------------------------------------------------------------------------------


def test_a_fork_bomb_is_refused(attack):
    outcome = attack(
        """
        import os

        def run():
            while True:
                os.fork()
        """
    )

    assert outcome.error_code == "tool_refused", outcome
    assert outcome.message == "PermissionError: [Errno 1] Operation not permitted"


def test_ten_thousand_threads_are_contained(attack):
    outcome = attack(
        """
        import threading

        def run():
            hold = threading.Event()
            started = 0
            try:
                for _ in range(10_000):
                    threading.Thread(target=hold.wait).start()
                    started += 1
                error = None
            except RuntimeError as exc:
                error = str(exc)
            hold.set()
            return {"started": started, "error": error}
        """
    )

    seen = attempts_of(outcome)
    assert seen["error"] == "can't start new thread"
    assert 10 < seen["started"] < 10_000


def test_allocating_4_gib_fails_with_tool_memory(attack):
    outcome = attack("def run():\n    return len(bytearray(4 * 2**30))\n")

    assert outcome.error_code == "tool_memory", outcome
    assert "512 MiB" in outcome.message


def test_a_cpu_loop_is_stopped_by_the_cpu_limit(attack):
    outcome = attack(
        "def run():\n    while True:\n        pass\n",
        limits=SandboxLimits(cpu_s=1, wall_timeout_s=10),
    )

    assert outcome.error_code == "tool_timeout", outcome
    assert outcome.message == "the tool used more than 1 s of CPU"
    assert outcome.duration_ms < 5000


def test_sleeping_forever_is_stopped_by_the_wall_clock(attack):
    outcome = attack(
        "import time\n\ndef run():\n    time.sleep(10**6)\n",
        limits=SandboxLimits(wall_timeout_s=1),
    )

    assert outcome.error_code == "tool_timeout", outcome
    assert outcome.message == "the tool ran longer than 1 s"
    assert 1000 <= outcome.duration_ms < 3000


def test_a_64_mib_result_is_too_large(attack):
    outcome = attack("def run():\n    return 'x' * 64 * 2**20\n")

    assert outcome.error_code == "tool_output_too_large", outcome
    assert outcome.result is None


def test_64_mib_on_stdout_is_cut_to_the_log_limit(attack):
    outcome = attack(
        """
        import os, sys

        def run():
            print("x" * 64 * 2**20)
            sys.stdout.write("y" * 64 * 2**20)
            os.write(1, b"z" * 64 * 2**20)  # fd 1 is /dev/null
            return "printed"
        """
    )

    assert outcome.ok and outcome.result == "printed", outcome
    assert outcome.log == "x" * 64 * 1024


def test_a_2_gib_file_stops_at_the_file_size_limit(attack):
    outcome = attack(
        """
        def run():
            chunk = b"x" * 2**20
            with open("big.bin", "wb") as big:
                for _ in range(2048):
                    big.write(chunk)
        """
    )

    assert outcome.error_code == "tool_refused", outcome
    assert outcome.message == "OSError: [Errno 27] File too large"


def test_heavy_calls_do_not_disturb_a_light_one(sandbox, attack, packages_dir):
    """The limits are per call: a neighbour spinning and allocating does not stop another."""
    light = write_package(packages_dir, "def run():\n    return 'light'\n")
    spinning = threading.Thread(
        target=lambda: attack("def run():\n    while True:\n        pass\n", limits=FAST)
    )
    spinning.start()
    try:
        outcome = sandbox.run_tool(light, "tool:run", {}, limits=FAST)
    finally:
        spinning.join()

    assert outcome.ok and outcome.result == "light", outcome
