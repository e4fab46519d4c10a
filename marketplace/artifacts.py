"""A package's artifact: the gzip-compressed tar (.tar.gz) of its Python code.

`inspect_artifact` checks an upload before anything is stored; `unpack` writes a checked one
out for the sandbox and checks it again. Publishers are untrusted, so decompression is
bounded (a gzip bomb stops at the cap, never expands in full) and only regular files and
directories under plain relative paths, of the kinds below, are accepted.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from beamclaw.errors import InvalidInput

from .manifest import Manifest
from .manifest_checks import json_path

MAX_COMPRESSED_BYTES = 5 * 1024 * 1024
# The decompressed tar stream: file contents plus their headers. With the compressed cap it
# also bounds the compression ratio, so no separate ratio check is needed.
MAX_TAR_BYTES = 20 * 1024 * 1024
MAX_MEMBERS = 500  # files and directories
MAX_FILE_BYTES = 2 * 1024 * 1024
MAX_PATH_CHARS = 255
MAX_PATH_PARTS = 16
# Code and the data it reads; no compiled code (.pyc, .so), which the sandbox would load
# without a source anyone can review.
ALLOWED_SUFFIXES = (".py", ".json", ".txt", ".md")
# A path component: ASCII letters, digits, _ . -, not starting with a dot (no hidden files,
# no `..`) or a hyphen.
_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,99}")
# Python before 3.11.10 and 3.12.6 reads a pax header with a regular expression that takes
# time quadratic in its length (a 20 KB one takes about a second); real ones are ~100 bytes.
MAX_PAX_HEADER_BYTES = 1024


Members = list[tuple[str, tarfile.TarInfo]]  # (normalised path, its entry) in archive order


@dataclass(frozen=True)
class Artifact:
    sha256: str  # of the uploaded bytes, which are what is stored
    size: int  # compressed bytes
    files: dict[str, int]  # normalised path ("tools/words.py") -> size; regular files only


def inspect_artifact(data: bytes) -> Artifact:
    """The artifact's listing, or InvalidInput naming the first problem (and its member)."""
    with _opened(_decompressed(data)) as (_, members):
        files = {path: member.size for path, member in members if member.isreg()}
    return Artifact(sha256=hashlib.sha256(data).hexdigest(), size=len(data), files=files)


def check_entry_points(artifact: Artifact | None, manifest: Manifest) -> None:
    """Every python tool's module is a file of the artifact, or `entry_point_missing`.

    Only the module file is looked for: whether it defines the function can only be known
    by importing it, which means running the publisher's code, so the sandbox finds out.
    """
    for tool in manifest.python_tools:
        where = json_path("tools", tool.index, "entry_point")
        if artifact is None:
            message = f"{where}: {tool.name} is a python tool, but no artifact was uploaded."
        elif not any(path in artifact.files for path in tool.module_files):
            message = (
                f"{where}: module {tool.module} is not in the artifact "
                f"(looked for {' and '.join(tool.module_files)})."
            )
        else:
            continue
        raise InvalidInput("entry_point_missing", message, details={"field": where})


def unpack(data: bytes, dest: Path) -> None:
    """Check the artifact again and write its files under `dest` (created if missing; if it
    exists it must be an empty directory): files read-only (0o444), directories 0o555.

    Nothing from the archive can be a link, and each file is created new (O_EXCL) without
    following a link, so nothing is written outside `dest`. Unpack into a fresh directory
    and rename it into place, so readers never see half an artifact.
    """
    if dest.is_symlink() or (dest.exists() and (not dest.is_dir() or any(dest.iterdir()))):
        raise FileExistsError(f"{dest} is not an empty directory")
    with _opened(_decompressed(data)) as (tar, members):
        dest.mkdir(mode=0o700, exist_ok=True)
        for path, member in members:
            target = dest / path
            if member.isdir():
                target.mkdir(mode=0o700, parents=True, exist_ok=True)
                continue
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            source = tar.extractfile(member)
            assert source is not None  # a regular file always has a body
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            with os.fdopen(os.open(target, flags, 0o600), "wb") as out:
                out.write(source.read())
                os.fchmod(out.fileno(), 0o444)
    # Children before parents: a directory made read-only first would refuse their chmod.
    for directory, _, _ in os.walk(dest, topdown=False):
        os.chmod(directory, 0o555)


# --- reading -----------------------------------------------------------------------------


def _refused(code: str, message: str, member: str | None = None) -> InvalidInput:
    details = {} if member is None else {"member": member[:300]}
    where = "" if member is None else f"{member[:300]!r}: "
    return InvalidInput(code, f"Artifact refused: {where}{message}", details=details)


def _decompressed(data: bytes) -> bytes:
    """The tar stream inside the gzip, decompressing at most MAX_TAR_BYTES + 1 bytes."""
    if len(data) > MAX_COMPRESSED_BYTES:
        raise _refused(
            "artifact_too_large", f"it is {len(data)} bytes; the limit is {MAX_COMPRESSED_BYTES}."
        )
    if not data.startswith(b"\x1f\x8b"):
        raise _refused("artifact_invalid", "it is not gzip-compressed (expected a .tar.gz).")
    decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip framing
    try:
        tar_bytes = decompressor.decompress(data, MAX_TAR_BYTES + 1)
    except zlib.error as exc:
        raise _refused("artifact_invalid", f"the gzip data is damaged ({exc}).")
    if len(tar_bytes) > MAX_TAR_BYTES:
        raise _refused(
            "artifact_too_large", f"it expands to more than {MAX_TAR_BYTES} bytes uncompressed."
        )
    if not decompressor.eof:
        raise _refused("artifact_invalid", "the gzip data is cut short.")
    if decompressor.unused_data:
        raise _refused("artifact_invalid", "there are bytes after the gzip data.")
    return tar_bytes


class _BoundedTarInfo(tarfile.TarInfo):
    """Refuses a long pax header before tarfile parses it (see MAX_PAX_HEADER_BYTES)."""

    def _proc_pax(self, archive: tarfile.TarFile) -> tarfile.TarInfo:
        if self.size > MAX_PAX_HEADER_BYTES:
            message = f"a pax header is over {MAX_PAX_HEADER_BYTES} bytes."
            raise _refused("artifact_invalid", message)
        return super()._proc_pax(archive)  # type: ignore[misc]


@contextlib.contextmanager
def _opened(tar_bytes: bytes) -> Iterator[tuple[tarfile.TarFile, Members]]:
    """The open tar and its checked members, as (normalised path, TarInfo) in archive order;
    tarfile's own errors come out as `artifact_invalid`."""
    try:
        with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:", tarinfo=_BoundedTarInfo) as tar:
            yield tar, _checked_members(tar, tar_bytes)
    except (tarfile.TarError, EOFError, RecursionError, ValueError, OverflowError) as exc:
        raise _refused("artifact_invalid", f"it is not a valid tar archive ({exc}).")


def _checked_members(tar: tarfile.TarFile, tar_bytes: bytes) -> Members:
    members: Members = []
    kinds: dict[str, str] = {}  # normalised path -> "file", "directory" or "implied" (a parent)
    while (member := tar.next()) is not None:
        if len(members) == MAX_MEMBERS:
            raise _refused("artifact_too_many_files", f"it has over {MAX_MEMBERS} entries.")
        name = member.name
        if member.issym() or member.islnk():
            raise _refused("artifact_link", "links are not allowed.", name)
        if not (member.isfile() or member.isdir()) or member.issparse():
            raise _refused("artifact_special_file", "only files and directories.", name)
        path = _normalised(name)
        if member.isfile():
            if not path.endswith(ALLOWED_SUFFIXES):
                allowed = ", ".join(ALLOWED_SUFFIXES)
                raise _refused("artifact_file_type", f"only {allowed} files.", name)
            if member.size > MAX_FILE_BYTES:
                raise _refused("artifact_file_too_large", f"over {MAX_FILE_BYTES} bytes.", name)
            if member.size < 0 or member.offset_data + member.size > len(tar_bytes):
                raise _refused("artifact_invalid", "the file's size does not fit its data.", name)
        if not path:  # the archive's own top directory, "./"
            continue
        _claim(kinds, path, "directory" if member.isdir() else "file", name)
        members.append((path, member))
    if tar_bytes[tar.offset :].strip(b"\0"):
        raise _refused("artifact_invalid", "it holds data tar cannot read as entries.")
    if not any(member.isfile() for _, member in members):
        raise _refused("artifact_invalid", "it holds no files.")
    return members


def _normalised(name: str) -> str:
    """`./tools//words.py` -> `tools/words.py`, or `artifact_unsafe_path`."""
    if "\x00" in name or "\\" in name:
        raise _refused("artifact_unsafe_path", "NUL and backslash are not allowed.", name)
    if name.startswith("/"):
        raise _refused("artifact_unsafe_path", "absolute paths are not allowed.", name)
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise _refused("artifact_unsafe_path", "'..' is not allowed.", name)
    if not all(_PART.fullmatch(part) for part in parts):
        raise _refused(
            "artifact_unsafe_path",
            "each name must be ASCII letters, digits, _ . - and not start with . or -.",
            name,
        )
    path = "/".join(parts)
    if len(path) > MAX_PATH_CHARS or len(parts) > MAX_PATH_PARTS:
        raise _refused(
            "artifact_unsafe_path",
            f"paths are limited to {MAX_PATH_CHARS} characters and {MAX_PATH_PARTS} levels.",
            name,
        )
    return path


def _claim(kinds: dict[str, str], path: str, kind: str, name: str) -> None:
    """Record `path` as a "file" or "directory" and its parents as directories; refuse a
    path named twice, or a file where a directory is."""
    previous = kinds.get(path)
    if previous in ("file", "directory"):
        raise _refused("artifact_duplicate_path", "the path appears twice.", name)
    if previous == "implied" and kind == "file":
        raise _refused("artifact_duplicate_path", "other entries are inside this path.", name)
    parts = path.split("/")
    for depth in range(1, len(parts)):
        parent = "/".join(parts[:depth])
        if kinds.setdefault(parent, "implied") == "file":
            raise _refused("artifact_duplicate_path", f"{parent} is a file, not a folder.", name)
    kinds[path] = kind
