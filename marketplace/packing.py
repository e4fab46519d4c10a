"""A package folder as the publish API takes it: `manifest.json`, and the Python code of
its tools packed as a .tar.gz (every file of the folder but the manifest and caches)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

SKIPPED = {"manifest.json", "__pycache__", "README.md"}


def read_package(folder: Path) -> tuple[object, bytes | None]:
    """The folder's manifest (parsed JSON) and its artifact (None when there is no code)."""
    manifest = json.loads((folder / "manifest.json").read_text())
    files = sorted(
        path
        for path in folder.rglob("*")
        if path.is_file() and not SKIPPED & set(path.relative_to(folder).parts)
    )
    if not files:
        return manifest, None
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz", format=tarfile.GNU_FORMAT) as tar:
        for path in files:
            info = tarfile.TarInfo(path.relative_to(folder).as_posix())
            data = path.read_bytes()
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return manifest, raw.getvalue()
