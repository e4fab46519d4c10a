"""The kernel layers a tool-call child applies to itself: rlimits, Landlock and a seccomp deny-list.

Runs inside the fork server, so it imports only the standard library (no Django, no package of
this project). Landlock is reached through raw syscalls and seccomp through libseccomp, both with
ctypes; libraries are loaded by fixed soname, because `ctypes.util.find_library` runs `ldconfig`
and fails inside the sandbox.
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import signal
import socket

# --- rlimits ----------------------------------------------------------------------------


def apply_rlimits(*, cpu_s: int, memory_bytes: int, file_size_bytes: int, open_files: int) -> None:
    """CPU seconds, address space, largest file, open files; no core dumps.

    The CPU hard limit is one second above the soft one: the soft limit sends SIGXCPU (which
    ends the process unless the tool catches it), the hard limit SIGKILL.
    """
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_bytes, file_size_bytes))
    resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


# --- libc: prctl, mallopt ------------------------------------------------------------

_libc = ctypes.CDLL("libc.so.6", use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.prctl.argtypes = [
    ctypes.c_int,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
]

PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
_M_ARENA_MAX = -8

# --- Landlock ---------------------------------------------------------------------------

# The Landlock syscalls have the same numbers on every architecture that has them.
_SYS_LANDLOCK_CREATE_RULESET = 444
_SYS_LANDLOCK_ADD_RULE = 445
_SYS_LANDLOCK_RESTRICT_SELF = 446
_LANDLOCK_CREATE_RULESET_VERSION = 1 << 0
_LANDLOCK_RULE_PATH_BENEATH = 1

FS_EXECUTE = 1 << 0
FS_WRITE_FILE = 1 << 1
FS_READ_FILE = 1 << 2
FS_READ_DIR = 1 << 3
FS_REMOVE_DIR = 1 << 4
FS_REMOVE_FILE = 1 << 5
FS_MAKE_CHAR = 1 << 6
FS_MAKE_DIR = 1 << 7
FS_MAKE_REG = 1 << 8
FS_MAKE_SOCK = 1 << 9
FS_MAKE_FIFO = 1 << 10
FS_MAKE_BLOCK = 1 << 11
FS_MAKE_SYM = 1 << 12
FS_REFER = 1 << 13  # ABI 2
FS_TRUNCATE = 1 << 14  # ABI 3
FS_IOCTL_DEV = 1 << 15  # ABI 5
NET_BIND_TCP = 1 << 0  # ABI 4
NET_CONNECT_TCP = 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
SCOPE_SIGNAL = 1 << 1

_READ = FS_READ_FILE | FS_READ_DIR
_WRITE = (
    _READ
    | FS_WRITE_FILE
    | FS_REMOVE_DIR
    | FS_REMOVE_FILE
    | FS_MAKE_DIR
    | FS_MAKE_REG
    | FS_MAKE_SYM
    | FS_REFER
    | FS_TRUNCATE
)


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class LayerError(Exception):
    """A layer could not be applied: the call must not run the tool."""


def landlock_abi() -> int:
    """The kernel's Landlock ABI version, 0 when Landlock is absent or disabled."""
    abi = _libc.syscall(_SYS_LANDLOCK_CREATE_RULESET, None, 0, _LANDLOCK_CREATE_RULESET_VERSION)
    return max(abi, 0)


def _handled_fs(abi: int) -> int:
    handled = (FS_MAKE_SYM << 1) - 1  # every right of ABI 1
    if abi >= 2:
        handled |= FS_REFER
    if abi >= 3:
        handled |= FS_TRUNCATE
    if abi >= 5:
        handled |= FS_IOCTL_DEV
    return handled


def set_no_new_privs() -> None:
    if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise LayerError(f"prctl(NO_NEW_PRIVS): {os.strerror(ctypes.get_errno())}")


def limit_malloc_arenas(arenas: int = 2) -> None:
    """What MALLOC_ARENA_MAX=2 does, without an environment variable: glibc gives each new
    thread a 64 MiB arena otherwise, so under a 512 MiB RLIMIT_AS only a few threads could
    start. Must run before the process starts a second thread; forked children inherit it."""
    if _libc.mallopt(_M_ARENA_MAX, arenas) != 1:
        raise LayerError("mallopt(M_ARENA_MAX) failed")


def die_with_parent() -> None:
    """SIGKILL this process when the thread that forked it (the fork server) ends."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def apply_landlock(*, read_paths: list[str], write_paths: list[str]) -> list[str]:
    """Allow reading `read_paths` and reading/writing `write_paths`, nothing else on any file.

    From ABI 4 every TCP bind/connect is denied; from ABI 6 signals and abstract Unix sockets
    cannot reach outside this process's domain. Returns what was enforced, e.g.
    ["landlock_abi7", "landlock_fs", "landlock_tcp", "landlock_scope"].
    """
    abi = landlock_abi()
    if abi < 1:
        raise LayerError("Landlock is not available in this kernel")
    attr = _RulesetAttr(handled_access_fs=_handled_fs(abi))
    size = 8
    enforced = [f"landlock_abi{abi}", "landlock_fs"]
    if abi >= 4:
        attr.handled_access_net = NET_BIND_TCP | NET_CONNECT_TCP
        size = 16
        enforced.append("landlock_tcp")
    if abi >= 6:
        attr.scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL
        size = 24
        enforced.append("landlock_scope")
    ruleset_fd = _libc.syscall(_SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), size, 0)
    if ruleset_fd < 0:
        raise LayerError(f"landlock_create_ruleset: {os.strerror(ctypes.get_errno())}")
    try:
        handled = attr.handled_access_fs
        for paths, access in ((read_paths, _READ), (write_paths, _WRITE)):
            for path in paths:
                _add_path_rule(ruleset_fd, path, access & handled)
        set_no_new_privs()
        if _libc.syscall(_SYS_LANDLOCK_RESTRICT_SELF, ruleset_fd, 0) != 0:
            raise LayerError(f"landlock_restrict_self: {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(ruleset_fd)
    return enforced


def _add_path_rule(ruleset_fd: int, path: str, access: int) -> None:
    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        if not os.path.isdir(path):
            # A rule on a file may only carry the rights that make sense for a file.
            access &= FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV
        rule = _PathBeneathAttr(allowed_access=access, parent_fd=fd)
        if (
            _libc.syscall(
                _SYS_LANDLOCK_ADD_RULE,
                ruleset_fd,
                _LANDLOCK_RULE_PATH_BENEATH,
                ctypes.byref(rule),
                0,
            )
            != 0
        ):
            raise LayerError(f"landlock_add_rule({path}): {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(fd)


# --- seccomp ----------------------------------------------------------------------------

_SCMP_ACT_ALLOW = 0x7FFF0000
_SCMP_CMP_NE = 1
_SCMP_CMP_EQ = 4
_SCMP_CMP_MASKED_EQ = 7
CLONE_THREAD = 0x00010000
_F_SETOWN = 8
_F_SETOWN_EX = 15


def _scmp_act_errno(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)


class _ArgCmp(ctypes.Structure):
    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


# Denied outright with EPERM. Anything that starts a program or a process, reaches another
# process's memory, changes namespaces or mounts, or opens a kernel attack surface a tool has no
# use for. `socket` is denied for every family: Landlock and a network namespace do not stop a
# connect() to a pathname Unix socket (a database's, for one).
DENIED_SYSCALLS = (
    "socket",
    "execve",
    "execveat",
    "fork",
    "vfork",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "process_madvise",
    "pidfd_getfd",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "unshare",
    "setns",
    "bpf",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "keyctl",
    "add_key",
    "request_key",
    "perf_event_open",
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "kexec_file_load",
    "reboot",
    "swapon",
    "swapoff",
    "tkill",
    "pidfd_send_signal",
)


class _Seccomp:
    """libseccomp, loaded once by soname, its few functions typed."""

    def __init__(self) -> None:
        lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
        lib.seccomp_init.restype = ctypes.c_void_p
        lib.seccomp_init.argtypes = [ctypes.c_uint32]
        lib.seccomp_rule_add_array.argtypes = [
            ctypes.c_void_p,
            ctypes.c_uint32,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.POINTER(_ArgCmp),
        ]
        lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
        lib.seccomp_load.argtypes = [ctypes.c_void_p]
        lib.seccomp_release.argtypes = [ctypes.c_void_p]
        lib.seccomp_version.restype = ctypes.c_void_p
        self.lib = lib

    def version(self) -> str:
        numbers = ctypes.cast(self.lib.seccomp_version(), ctypes.POINTER(ctypes.c_uint))
        return f"libseccomp {numbers[0]}.{numbers[1]}.{numbers[2]}"


_seccomp: _Seccomp | None = None


def seccomp_library() -> _Seccomp:
    global _seccomp
    if _seccomp is None:
        _seccomp = _Seccomp()
    return _seccomp


def apply_seccomp(*, own_pid: int) -> list[str]:
    """Load the deny-list filter; every other syscall stays allowed.

    Beyond DENIED_SYSCALLS: `clone` is denied unless it makes a thread; `clone3` answers ENOSYS
    (its flags sit in memory a filter cannot read, and glibc falls back to `clone` on ENOSYS, so
    threads still work); `socketpair` only for AF_UNIX (asyncio needs one); a signal may only go
    to this process itself, and no fd may name another process as the owner its signals go to.
    Returns the names of the syscalls that are filtered.
    """
    library = seccomp_library()
    lib = library.lib
    ctx = lib.seccomp_init(_SCMP_ACT_ALLOW)
    if not ctx:
        raise LayerError("seccomp_init failed")
    eperm = _scmp_act_errno(errno.EPERM)
    filtered: list[str] = []

    def deny(name: str, action: int, *conditions: tuple[int, int, int, int]) -> None:
        number = lib.seccomp_syscall_resolve_name(name.encode())
        if number < 0:
            return  # unknown to this libseccomp, so unknown to this kernel's headers too
        array = (_ArgCmp * max(len(conditions), 1))(*[_ArgCmp(*c) for c in conditions])
        result = lib.seccomp_rule_add_array(ctx, action, number, len(conditions), array)
        if result != 0:
            raise LayerError(f"seccomp rule for {name}: {os.strerror(-result)}")
        filtered.append(name)

    try:
        for name in DENIED_SYSCALLS:
            deny(name, eperm)
        deny("clone", eperm, (0, _SCMP_CMP_MASKED_EQ, CLONE_THREAD, 0))
        deny("clone3", _scmp_act_errno(errno.ENOSYS))
        deny("socketpair", eperm, (0, _SCMP_CMP_NE, socket.AF_UNIX, 0))
        for name in ("kill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo"):
            deny(name, eperm, (0, _SCMP_CMP_NE, own_pid, 0))
        # An fd's owner receives SIGIO (or any signal F_SETSIG names) when it becomes ready.
        for command in (_F_SETOWN, _F_SETOWN_EX):
            deny("fcntl", eperm, (1, _SCMP_CMP_EQ, command, 0))
        result = lib.seccomp_load(ctx)
        if result != 0:
            raise LayerError(f"seccomp_load: {os.strerror(-result)}")
    finally:
        lib.seccomp_release(ctx)
    return filtered
