"""`manage.py publish_package <folder>`: the example package is published as it is."""

from __future__ import annotations

import io
import json
import shutil
import tarfile

import pytest
from django.core.management import CommandError, call_command

from marketplace.models import PackageVersion
from marketplace.publishing import claim_publisher

from .test_example_package import EXAMPLE

pytestmark = pytest.mark.django_db


def test_the_example_package_publishes_with_its_code(acme):
    claim_publisher(tenant=acme.tenant, handle="examples")
    out = io.StringIO()

    call_command("publish_package", str(EXAMPLE), "--publisher", "examples", stdout=out)

    assert out.getvalue().startswith("published examples/hello-tools@1.0.0")
    version = PackageVersion.objects.get()
    with tarfile.open(fileobj=io.BytesIO(bytes(version.artifact)), mode="r:gz") as tar:
        assert sorted(tar.getnames()) == ["tools/__init__.py", "tools/words.py"]
    assert version.manifest == json.loads((EXAMPLE / "manifest.json").read_text())


def test_a_refused_package_says_why_and_stores_nothing(acme, tmp_path):
    claim_publisher(tenant=acme.tenant, handle="examples")
    folder = tmp_path / "broken"
    shutil.copytree(EXAMPLE, folder)
    (folder / "tools" / "words.py").unlink()

    with pytest.raises(CommandError, match="entry_point_missing"):
        call_command("publish_package", str(folder), "--publisher", "examples")
    with pytest.raises(CommandError, match="No publisher 'nobody'"):
        call_command("publish_package", str(EXAMPLE), "--publisher", "nobody")
    assert not PackageVersion.objects.exists()
