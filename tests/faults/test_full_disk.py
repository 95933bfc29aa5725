"""Starvation: the cache on a full disk (a 2 MiB tmpfs as XDG_CACHE_HOME, far smaller than the kernel and initrd).
The build says the disk is full and names the path, exits non-zero, and leaves nothing half-written in the cache
and no domain or volume. Real libvirtd; the rehearsal tree served on 127.0.0.1."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures_libvirt import leftovers

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.libvirt]


def test_full_cache_disk_during_download(libvirt_uri: str, tree_server: str, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    cache = tmp_path / "cache"
    cache.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(cache)], check=True)
    try:
        env = dict(os.environ, XDG_CACHE_HOME=str(cache))
        argv = [sys.executable, "-m", "ccis_workbench", "build", "openstack-stream9", "--tree", tree_server,
                "--output", str(tmp_path / "out"), "--accel", "tcg", "--disk-size", "96M", "--memory", "512"]
        done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, env=env, timeout=300, check=False)
        assert done.returncode != 0, done.stderr[-2000:]
        assert "No space left on device" in done.stderr and str(cache) in done.stderr, done.stderr[-2000:]
        assert "Traceback" not in done.stderr
        assert "== upload" not in done.stderr and "== install" not in done.stderr  # no volume, no domain was made
        partial = [p for p in cache.rglob("*") if p.is_file() and (p.name.endswith(".part") or "vmlinuz" in p.name
                                                                    or "initrd" in p.name)]
        assert not partial
        assert not list(cache.rglob("locks/*.lock"))
        assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
    finally:
        subprocess.run(["umount", str(cache)], check=False)


def test_full_output_disk_during_artifacts(libvirt_uri: str, tree_server: str, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(out)], check=True)
    try:
        env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
        argv = [sys.executable, "-m", "ccis_workbench", "build", "openstack-stream9", "--tree", tree_server,
                "--output", str(out), "--accel", "tcg", "--disk-size", "96M", "--memory", "512"]
        done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, env=env, timeout=600, check=False)
        assert done.returncode != 0, done.stderr[-2000:]
        assert "No space left on device" in done.stderr and str(out) in done.stderr, done.stderr[-3000:]
        assert "Traceback" not in done.stderr
        assert not list(out.iterdir()), list(out.rglob("*"))
        dom = re.search(r"domain (ccis-openstack-stream9-\S+)", done.stderr)
        assert dom, done.stderr[-2000:]
        assert not [n for n in leftovers(libvirt_uri) if n.startswith(dom.group(1))]
    finally:
        subprocess.run(["umount", str(out)], check=False)
