"""The pure-Python newc cpio writer and the kickstart injection, checked with the real GNU cpio and gzip."""

from __future__ import annotations

import gzip
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from ccis_workbench.core.errors import WorkbenchError
from ccis_workbench.core.initrd import CpioEntry, cpio_bytes, inject_kickstart, kickstart_archive, read_cpio

needs_cpio = pytest.mark.skipif(shutil.which("cpio") is None, reason="GNU cpio not installed")


def sample_entries() -> list[CpioEntry]:
    return [
        CpioEntry.directory("etc"),
        CpioEntry.file("etc/hello.txt", b"hello\n", 0o640),
        CpioEntry.file("odd", b"123", 0o755),  # a size that needs padding
        CpioEntry.symlink("etc/link", "hello.txt"),
        CpioEntry.file("empty", b""),
    ]


def test_roundtrip_through_own_reader() -> None:
    raw = cpio_bytes(sample_entries(), compress=False)
    assert raw.startswith(b"070701")
    assert len(raw) % 4 == 0
    back = {e.name: e for e in read_cpio(raw)}
    assert back["etc/hello.txt"].data == b"hello\n"
    assert stat.S_IMODE(back["etc/hello.txt"].mode) == 0o640
    assert stat.S_ISLNK(back["etc/link"].mode) and back["etc/link"].data == b"hello.txt"
    assert stat.S_ISDIR(back["etc"].mode)
    assert back["odd"].data == b"123"


def test_reproducible() -> None:
    assert cpio_bytes(sample_entries()) == cpio_bytes(sample_entries())


@needs_cpio
def test_gnu_cpio_lists_and_extracts(tmp_path: Path) -> None:
    raw = cpio_bytes(sample_entries(), compress=False)
    listing = subprocess.run(["cpio", "-it", "--quiet"], input=raw, capture_output=True, check=True).stdout
    assert listing.decode().split() == ["etc", "etc/hello.txt", "odd", "etc/link", "empty"]
    subprocess.run(["cpio", "-idm", "--quiet"], input=raw, cwd=tmp_path, check=True)
    assert (tmp_path / "etc/hello.txt").read_text() == "hello\n"
    assert stat.S_IMODE((tmp_path / "odd").stat().st_mode) == 0o755
    assert (tmp_path / "etc/link").is_symlink() and (tmp_path / "etc/link").readlink() == Path("hello.txt")


@needs_cpio
def test_character_device_numbers(tmp_path: Path) -> None:
    raw = cpio_bytes([CpioEntry.chardev("console", 5, 1)], compress=False)
    out = subprocess.run(["cpio", "-itv", "--quiet"], input=raw, capture_output=True, check=True).stdout.decode()
    assert out.startswith("crw-------")
    assert re.search(r"\b5,\s+1\b", out)


def test_kickstart_archive_is_gzip_newc_with_private_mode() -> None:
    entries = read_cpio(gzip.decompress(kickstart_archive("text\npoweroff\n")))
    assert [e.name for e in entries] == ["ks.cfg"]
    assert entries[0].data == b"text\npoweroff\n"
    assert stat.S_IMODE(entries[0].mode) == 0o600


def test_inject_appends_aligned_and_leaves_original(tmp_path: Path) -> None:
    original = tmp_path / "initrd.img"
    body = gzip.compress(cpio_bytes([CpioEntry.file("init", b"#!/bin/sh\n", 0o755)], compress=False)) + b"x"
    original.write_bytes(body)  # odd length: the appended archive must start 4-byte aligned
    before = original.read_bytes()
    dest = tmp_path / "out.img"
    digest = inject_kickstart(original, "text\n", dest)
    assert original.read_bytes() == before
    data = dest.read_bytes()
    assert data.startswith(before)
    start = (len(before) + 3) // 4 * 4
    assert data[len(before):start] == b"\0" * (start - len(before))
    appended = read_cpio(gzip.decompress(data[start:]))
    assert appended[0].name == "ks.cfg" and appended[0].data == b"text\n"
    import hashlib

    assert digest == hashlib.sha256(data).hexdigest()
    assert not list(tmp_path.glob(".*part"))


def test_inject_missing_initrd(tmp_path: Path) -> None:
    with pytest.raises(WorkbenchError, match="does not exist"):
        inject_kickstart(tmp_path / "nope", "text\n", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_bad_member_name() -> None:
    with pytest.raises(WorkbenchError):
        cpio_bytes([CpioEntry.file("a\0b", b"")])
