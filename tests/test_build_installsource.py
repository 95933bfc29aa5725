"""Install sources: .treeinfo parsing, download with progress into the cache, checksum verification, reuse,
local trees and ISOs (read with pycdlib). The HTTP tree is served on 127.0.0.1 inside the test."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from ccis_workbench.core.errors import WorkbenchError
from ccis_workbench.core.installsource import from_dir, from_iso, from_url, guest_url, parse_treeinfo, resolve
from ccis_workbench.core.monitor import RecordingMonitor
from ccis_workbench.rehearsal.httpserver import TreeServer

from .test_plan import make_tree

STREAM9_LIKE = """[header]
type = productmd.treeinfo
version = 1.2

[release]
name = CentOS Stream
short = CentOS-Stream
version = 9

[general]
family = CentOS Stream
version = 9
arch = x86_64
name = CentOS Stream 9

[tree]
arch = x86_64
variants = BaseOS

[images-x86_64]
boot.iso = images/boot.iso
efiboot.img = images/efiboot.img
initrd = images/pxeboot/initrd.img
kernel = images/pxeboot/vmlinuz

[stage2]
mainimage = images/install.img

[checksums]
images/pxeboot/initrd.img = sha256:00ff
images/pxeboot/vmlinuz = sha256:aa11
"""


def test_parse_real_format() -> None:
    info = parse_treeinfo(STREAM9_LIKE, "tree/.treeinfo")
    assert (info.family, info.version, info.arch) == ("CentOS Stream", "9", "x86_64")
    assert info.kernel == "images/pxeboot/vmlinuz" and info.initrd == "images/pxeboot/initrd.img"
    assert info.stage2 == "images/install.img"
    assert info.checksums["images/pxeboot/vmlinuz"] == ("sha256", "aa11")
    assert not info.is_rehearsal
    assert info.identity()["treeinfo_sha256"] == hashlib.sha256(STREAM9_LIKE.encode()).hexdigest()


def test_parse_errors_name_file_and_line() -> None:
    with pytest.raises(WorkbenchError) as ei:
        parse_treeinfo("[general]\nfamily = x\nthis line is not key value\n", "t/.treeinfo")
    assert ei.value.location is not None and ei.value.location.file == "t/.treeinfo"
    assert ei.value.location.line == 3
    with pytest.raises(WorkbenchError, match="no \\[images-aarch64\\]"):
        parse_treeinfo(STREAM9_LIKE, "t/.treeinfo", arch="aarch64")


def test_download_progress_verify_and_reuse(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree", family="Test tree")
    cache = tmp_path / "cache"
    with TreeServer(tree) as srv:
        mon = RecordingMonitor()
        src = from_url(srv.url, monitor=mon, cache=cache)
        assert src.downloaded == 1200 and src.kind == "url"
        assert src.kernel.read_bytes() == (tree / "images/pxeboot/vmlinuz").read_bytes()
        assert src.kernel.is_relative_to(cache)
        assert "download" in mon.stages()
        assert [e for e in mon.events if e[1] == "progress"][-1][2][:2] == (600, 600.0)
        again = RecordingMonitor()
        src2 = from_url(srv.url, monitor=again, cache=cache)
        assert src2.downloaded == 0 and "download" not in again.stages()
        assert any("reused" in n for n in src2.notes)
        # plan mode reads .treeinfo only
        src3 = from_url(srv.url, cache=tmp_path / "other", download=False)
        assert not src3.kernel.exists() and any("will be downloaded" in n for n in src3.notes)


def test_checksum_mismatch_leaves_nothing(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    (tree / "images/pxeboot/initrd.img").write_bytes(b"tampered")
    cache = tmp_path / "cache"
    with TreeServer(tree) as srv, pytest.raises(WorkbenchError, match="Checksum mismatch"):
        from_url(srv.url, cache=cache)
    assert not [p for p in cache.rglob("initrd.img*")]


def test_http_errors_are_explained(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with TreeServer(tmp_path / "empty") as srv, pytest.raises(WorkbenchError, match="HTTP 404"):
        from_url(srv.url, cache=tmp_path / "cache")
    with pytest.raises(WorkbenchError, match="Unsupported"):
        from_url("ftp://example.org/tree/")


def test_local_dir(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    src = resolve(str(tree))
    assert src.kind == "dir" and src.is_rehearsal and src.kernel == tree / "images/pxeboot/vmlinuz"
    (tree / "images/pxeboot/vmlinuz").write_bytes(b"other")
    with pytest.raises(WorkbenchError, match="Checksum mismatch"):
        from_dir(tree)
    with pytest.raises(WorkbenchError, match=r"no \.treeinfo"):
        from_dir(tmp_path)


@pytest.mark.skipif(shutil.which("xorriso") is None, reason="xorriso not installed")
def test_iso_read_with_pycdlib(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree", family="Test ISO")
    iso = tmp_path / "boot.iso"
    subprocess.run(["xorriso", "-as", "mkisofs", "-R", "-J", "-V", "TEST", "-o", str(iso), str(tree)],
                   check=True, capture_output=True)
    src = from_iso(iso, cache=tmp_path / "cache")
    assert src.kind == "iso" and src.iso == iso.resolve() and src.repo_arg() == "cdrom"
    assert src.initrd.read_bytes() == (tree / "images/pxeboot/initrd.img").read_bytes()
    assert src.treeinfo.family == "Test ISO"
    not_iso = tmp_path / "x.iso"
    not_iso.write_bytes(b"\0" * 40000)
    with pytest.raises(WorkbenchError, match="ISO"):
        from_iso(not_iso, cache=tmp_path / "cache")


def test_unknown_source(tmp_path: Path) -> None:
    with pytest.raises(WorkbenchError, match="neither a URL"):
        resolve(str(tmp_path / "missing"))


def test_guest_url() -> None:
    assert guest_url("http://127.0.0.1:8000/t/") == "http://10.0.2.2:8000/t/"
    assert guest_url("http://localhost/t/") == "http://10.0.2.2/t/"
    assert guest_url("http://127.0.0.1:8000/t/", network="default") == "http://127.0.0.1:8000/t/"
    assert guest_url("https://mirror.example/t/") == "https://mirror.example/t/"


def test_cached_files_are_hashed_once_then_trusted_by_stamp(tmp_path):
    """The second look at a cached kernel uses its size/mtime stamp; a changed file is hashed again."""
    import hashlib

    from ccis_workbench.core import installsource as src

    f = tmp_path / "vmlinuz"
    f.write_bytes(b"kernel" * 1000)
    digest = hashlib.sha256(f.read_bytes()).hexdigest()
    info = src.TreeInfo.__new__(src.TreeInfo)
    info.checksums = {"images/pxeboot/vmlinuz": ("sha256", digest)}
    assert src._matches(info, "images/pxeboot/vmlinuz", f)
    assert (tmp_path / "vmlinuz.verified").read_text().endswith(digest + "\n")
    calls = []
    real = src.sha256_file
    src.sha256_file = lambda p: calls.append(p) or real(p)
    try:
        assert src._matches(info, "images/pxeboot/vmlinuz", f) and calls == []
        f.write_bytes(b"tampered" * 1000)
        assert not src._matches(info, "images/pxeboot/vmlinuz", f) and calls == [f]
    finally:
        src.sha256_file = real
