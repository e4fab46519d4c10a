"""The example package in examples/packages/hello-tools is valid as published: its manifest
passes, its code packs into an artifact that passes, and that artifact holds its entry point."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

from marketplace.artifacts import check_entry_points, inspect_artifact
from marketplace.manifest import validate_manifest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "packages" / "hello-tools"


def packed(folder: Path) -> bytes:
    """What `tar -czf artifact.tar.gz tools` run in the example's folder makes."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        tar.add(folder, arcname=folder.name, filter=lambda info: _without_caches(info))
    return raw.getvalue()


def _without_caches(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    return None if "__pycache__" in info.name else info


def test_the_example_package_validates_and_its_artifact_holds_its_entry_point():
    manifest = validate_manifest(json.loads((EXAMPLE / "manifest.json").read_text()))
    artifact = inspect_artifact(packed(EXAMPLE / "tools"))

    check_entry_points(artifact, manifest)
    assert [tool.name for tool in manifest.python_tools] == ["count_words"]
    assert [tool.name for tool in manifest.http_tools] == ["define_word"]
    assert set(artifact.files) == {"tools/__init__.py", "tools/words.py"}


def test_the_example_tool_counts_words():
    # The example's code is plain Python: run here directly, as a reader would try it.
    namespace: dict = {}
    exec((EXAMPLE / "tools" / "words.py").read_text(), namespace)
    result = namespace["count_words"]({"text": "The cat saw the other cat.", "top": 1})
    assert result == {"words": 6, "distinct": 4, "most_frequent": [{"word": "the", "count": 2}]}
