"""An uploaded artifact (the .tar.gz of a package's code) is checked before it is stored:
each unsafe or oversized archive is refused with its own code, naming the member."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
import zlib
from pathlib import Path

import pytest

from beamclaw.errors import InvalidInput
from marketplace.artifacts import (
    MAX_COMPRESSED_BYTES,
    MAX_FILE_BYTES,
    MAX_MEMBERS,
    MAX_TAR_BYTES,
    check_entry_points,
    inspect_artifact,
    unpack,
)
from marketplace.manifest import validate_manifest

from .test_manifest import manifest

CODE = b"def count_words(args):\n    return {'words': len(args['text'].split())}\n"


def entry(name: str, content: bytes = b"", *, kind: bytes = tarfile.REGTYPE, **fields):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(content) if kind == tarfile.REGTYPE else 0
    for field, value in fields.items():
        setattr(info, field, value)
    return info, content


def tar_gz(*entries, format: int = tarfile.GNU_FORMAT) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=format) as tar:
        for info, content in entries:
            tar.addfile(info, io.BytesIO(content) if info.isreg() else None)
    return gzip.compress(raw.getvalue())


def refusal(data: bytes) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        inspect_artifact(data)
    return caught.value


def assert_refused(data: bytes, code: str, member: str | None = None) -> InvalidInput:
    error = refusal(data)
    assert error.code == code, error.message
    if member is not None:
        assert error.details == {"member": member[:300]}  # a hostile name is cut short
        assert repr(member[:300]) in error.message
    return error


PACKAGE = (
    entry("./", kind=tarfile.DIRTYPE),
    entry("./helper", kind=tarfile.DIRTYPE),
    entry("./helper/__init__.py"),
    entry("./helper/words.py", CODE),
    entry("./helper/stopwords.json", b'["a", "the"]'),
    entry("./README.md", b"# word helper\n"),
)


def test_a_package_archive_is_listed_with_its_digest():
    data = tar_gz(*PACKAGE)
    artifact = inspect_artifact(data)
    assert artifact.sha256 == hashlib.sha256(data).hexdigest()
    assert artifact.size == len(data)
    assert artifact.files == {
        "helper/__init__.py": 0,
        "helper/words.py": len(CODE),
        "helper/stopwords.json": 12,
        "README.md": 14,
    }


def test_entry_points_must_be_modules_of_the_artifact():
    valid = validate_manifest(manifest())  # its python tool is helper.words:count_words
    check_entry_points(inspect_artifact(tar_gz(*PACKAGE)), valid)
    check_entry_points(inspect_artifact(tar_gz(entry("helper/words/__init__.py", CODE))), valid)

    for artifact in (inspect_artifact(tar_gz(entry("helper/other.py", CODE))), None):
        with pytest.raises(InvalidInput) as caught:
            check_entry_points(artifact, valid)
        assert caught.value.code == "entry_point_missing"
        assert caught.value.details == {"field": "tools[0].entry_point"}


@pytest.mark.parametrize(
    "name",
    [
        "/etc/cron.d/x.py",
        "helper/../../outside.py",
        "..",
        "helper\\words.py",
        "helper/.hidden.py",
        "helper/-rf.py",
        "helper/wörds.py",
        "a/" * 20 + "deep.py",
        "helper/" + "x" * 300 + ".py",
    ],
)
def test_an_unsafe_path_is_refused(name):
    assert_refused(tar_gz(entry(name, CODE)), "artifact_unsafe_path", name)


def test_links_are_refused():
    symlink = entry("helper/words.py", kind=tarfile.SYMTYPE, linkname="/etc/passwd")
    assert_refused(tar_gz(symlink), "artifact_link", "helper/words.py")
    hardlink = entry("helper/copy.py", kind=tarfile.LNKTYPE, linkname="helper/words.py")
    assert_refused(
        tar_gz(entry("helper/words.py", CODE), hardlink), "artifact_link", "helper/copy.py"
    )


@pytest.mark.parametrize("kind", [tarfile.FIFOTYPE, tarfile.CHRTYPE, tarfile.BLKTYPE])
def test_devices_and_fifos_are_refused(kind):
    special = entry("helper/dev.py", kind=kind, devmajor=1, devminor=3)
    assert_refused(tar_gz(special), "artifact_special_file", "helper/dev.py")


def test_only_code_and_text_files_are_accepted():
    assert_refused(
        tar_gz(entry("helper/fast.so", b"\x7fELF")), "artifact_file_type", "helper/fast.so"
    )
    pyc = entry("helper/__pycache__/words.cpython-311.pyc", b"\x00")
    assert_refused(tar_gz(pyc), "artifact_file_type", "helper/__pycache__/words.cpython-311.pyc")


def test_the_same_path_twice_is_refused():
    twice = tar_gz(entry("helper/words.py", CODE), entry("./helper//words.py", CODE))
    assert_refused(twice, "artifact_duplicate_path", "./helper//words.py")
    file_as_folder = tar_gz(entry("helper.py", CODE), entry("helper.py/words.py", CODE))
    assert_refused(file_as_folder, "artifact_duplicate_path", "helper.py/words.py")
    # A folder named after its files is not a duplicate.
    later_folder = tar_gz(entry("helper/words.py", CODE), entry("helper", kind=tarfile.DIRTYPE))
    assert inspect_artifact(later_folder).files == {"helper/words.py": len(CODE)}


def test_a_file_over_the_size_limit_is_refused():
    big = entry("helper/data.json", b" " * (MAX_FILE_BYTES + 1))
    assert_refused(tar_gz(big), "artifact_file_too_large", "helper/data.json")


def test_too_many_files_are_refused():
    entries = [entry(f"helper/m{i}.py") for i in range(MAX_MEMBERS + 1)]
    assert_refused(tar_gz(*entries), "artifact_too_many_files")


def test_an_upload_over_the_compressed_limit_is_refused():
    data = b"\x1f\x8b" + os.urandom(MAX_COMPRESSED_BYTES - 1)
    assert_refused(data, "artifact_too_large")


def test_a_gzip_bomb_is_refused_at_the_uncompressed_limit():
    # 64 MiB of zeros compress to a few dozen KiB; the limit is 20 MiB uncompressed.
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1024 * 1024)
    bomb = b"".join(compressor.compress(zeros) for _ in range(64)) + compressor.flush()
    assert len(bomb) < 100 * 1024

    error = assert_refused(bomb, "artifact_too_large")
    assert f"more than {MAX_TAR_BYTES} bytes uncompressed" in error.message


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"PK\x03\x04 a zip file", "not gzip-compressed"),
        (b"", "not gzip-compressed"),
        (gzip.compress(b"print('not a tar')\n" * 100), "not a valid tar"),
        (gzip.compress(bytes(10240)), "no files"),
        (tar_gz(*PACKAGE)[:-20], "cut short"),
        (tar_gz(*PACKAGE) + b"more", "after the gzip"),
        (b"\x1f\x8b" + b"\x08\x00" + b"garbage" * 10, "damaged"),
    ],
)
def test_what_is_not_a_tar_gz_is_refused(data, words):
    error = assert_refused(data, "artifact_invalid")
    assert words in error.message


def test_bytes_hidden_after_the_end_of_the_archive_are_refused():
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info, content = entry("helper/words.py", CODE)
        tar.addfile(info, io.BytesIO(content))
    hidden = raw.getvalue() + b"\0" * 1024 + b"data another reader might take as entries"
    error = assert_refused(gzip.compress(hidden), "artifact_invalid")
    assert "data tar cannot read" in error.message


def test_a_long_pax_header_is_refused_before_tarfile_parses_it():
    # tarfile parses pax headers with a regular expression that is quadratic in some
    # Python versions: a long one is refused first.
    long_header = entry("helper/words.py", CODE, pax_headers={"comment": "1" * 5000})
    error = assert_refused(tar_gz(long_header, format=tarfile.PAX_FORMAT), "artifact_invalid")
    assert "pax header" in error.message
    short_header = entry("helper/words.py", CODE, pax_headers={"comment": "ok"})
    assert inspect_artifact(tar_gz(short_header, format=tarfile.PAX_FORMAT)).files


@pytest.fixture
def dest(tmp_path: Path):
    """A place to unpack into; made writable again afterwards so it can be removed."""
    yield tmp_path / "unpacked"
    for root, dirs, _ in os.walk(tmp_path):
        os.chmod(root, 0o755)
        for name in dirs:
            os.chmod(Path(root) / name, 0o755)


def test_unpack_writes_read_only_files_and_folders(dest):
    unpack(tar_gz(*PACKAGE), dest)

    assert (dest / "helper" / "words.py").read_bytes() == CODE
    assert sorted(str(path.relative_to(dest)) for path in dest.rglob("*")) == [
        "README.md",
        "helper",
        "helper/__init__.py",
        "helper/stopwords.json",
        "helper/words.py",
    ]
    assert stat.S_IMODE((dest / "helper" / "words.py").stat().st_mode) == 0o444
    assert stat.S_IMODE((dest / "helper").stat().st_mode) == 0o555
    assert stat.S_IMODE(dest.stat().st_mode) == 0o555


def test_unpack_checks_the_archive_again_and_writes_nothing_if_it_is_unsafe(dest):
    with pytest.raises(InvalidInput) as caught:
        unpack(tar_gz(entry("helper/words.py", CODE), entry("../escape.py", CODE)), dest)
    assert caught.value.code == "artifact_unsafe_path"
    assert not dest.exists()
    assert not (dest.parent.parent / "escape.py").exists()


def test_unpack_refuses_a_folder_that_is_not_empty_or_is_a_link(dest, tmp_path):
    dest.mkdir()
    (dest / "left-over.py").write_text("")
    with pytest.raises(FileExistsError):
        unpack(tar_gz(*PACKAGE), dest)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    link = tmp_path / "link"
    link.symlink_to(elsewhere)
    with pytest.raises(FileExistsError):
        unpack(tar_gz(*PACKAGE), link)
    assert list(elsewhere.iterdir()) == []
